"""Validation-time adapter checks (the executor's `extra_checks` hook), from safetensors headers only.

Beyond ComfyUI, before anything loads or runs: a ControlNet / T2I-Adapter applied to conditioning that reaches
a sampler whose model is of another family (an SDXL ControlNet on an SD1.5 model) is an error on the apply
node naming the control file, the model file and both families, instead of a shape error mid-run.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.validation import NodeError
from nodes.checks import read_safetensors_header
from nodes.services import NodeServices

__all__ = ["AdapterFamilyCheck"]

Prompt = Mapping[str, Any]
_SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "CFGGuider", "BasicGuider")
_APPLY = ("ControlNetApplyAdvanced", "ControlNetApply")
_CONTROL_LOADERS = ("ControlNetLoader", "DiffControlNetLoader")
_MODEL_LOADERS = {"CheckpointLoaderSimple": ("ckpt_name", "checkpoints", "model.diffusion_model."),
                  "CheckpointLoader": ("ckpt_name", "checkpoints", "model.diffusion_model."),
                  "UNETLoader": ("unet_name", "diffusion_models", "")}
_COND_INPUTS = ("conditioning", "conditioning_1", "conditioning_2", "conditioning_to", "conditioning_from",
                "positive", "negative", "cond")


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)


def _shapes(header: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["shape"]) for k, v in header.items() if isinstance(v, dict) and isinstance(v.get("shape"), list)}


@dataclass(frozen=True)
class _File:
    node_id: str
    class_type: str
    name: str
    family: str

    def describe(self) -> str:
        return f"'{self.name}' ({self.family}, node #{self.node_id} {self.class_type})"


@dataclass
class AdapterFamilyCheck:
    """ControlNet / T2I-Adapter family vs the sampled model's family."""

    services: NodeServices
    _cache: dict[tuple[str, str, float], str | None] = field(default_factory=dict)

    def _family(self, kind: str, folder: str, name: Any, prefix: str = "") -> str | None:
        if not isinstance(name, str):
            return None
        try:
            path = self.services.paths.get_full_path(folder, name)
        except ValueError:
            return None
        if not path or not path.endswith((".safetensors", ".sft")):
            return None
        key = (kind + prefix, path, os.path.getmtime(path))
        if key not in self._cache:
            try:
                header = read_safetensors_header(path)
                self._cache[key] = self._read(kind, header, prefix)
            except Exception:  # unreadable or unknown files are reported by the loader node itself
                self._cache[key] = None
        return self._cache[key]

    @staticmethod
    def _read(kind: str, header: Mapping[str, Any], prefix: str) -> str | None:
        shapes = _shapes(header)
        if kind == "control":
            from engine.adapters.detect import control_family

            return control_family(shapes).family.name
        from engine.detect import detect_family_of_unet

        if not prefix and "model.diffusion_model.input_blocks.0.0.weight" in shapes:
            prefix = "model.diffusion_model."
        unet = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        return detect_family_of_unet(unet, header.get("__metadata__") or {})[0].name

    def _model(self, prompt: Prompt, link: Any) -> _File | None:
        for _ in range(64):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node_id, node = link[0], prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _MODEL_LOADERS and link[1] == 0:
                input_name, folder, prefix = _MODEL_LOADERS[ct]
                family = self._family("unet", folder, inputs.get(input_name), prefix)
                return _File(node_id, ct, inputs.get(input_name), family) if family else None
            link = inputs.get("model")
        return None

    def _control(self, prompt: Prompt, link: Any) -> _File | None:
        for _ in range(16):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node_id, node = link[0], prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _CONTROL_LOADERS:
                family = self._family("control", "controlnet", inputs.get("control_net_name"))
                return _File(node_id, ct, inputs.get("control_net_name"), family) if family else None
            link = inputs.get("control_net")
        return None

    def _applies(self, prompt: Prompt, link: Any) -> list[str]:
        """Ids of the ControlNet apply nodes upstream of a conditioning link."""
        found: list[str] = []
        seen: set[str] = set()
        stack = [link]
        while stack:
            current = stack.pop()
            if not _is_link(current) or current[0] not in prompt or current[0] in seen:
                continue
            seen.add(current[0])
            node = prompt[current[0]]
            if node.get("class_type") in _APPLY:
                found.append(current[0])
            stack += [v for k, v in node.get("inputs", {}).items() if k in _COND_INPUTS]
        return found

    def __call__(self, prompt: Prompt, registry: Any = None) -> list[NodeError]:
        problems: dict[str, NodeError] = {}
        for node_id, node in prompt.items():
            if not isinstance(node, Mapping) or node.get("class_type") not in _SAMPLERS:
                continue
            inputs = node.get("inputs", {})
            model = self._model(prompt, inputs.get("model"))
            if model is None:
                continue
            for side in ("positive", "negative", "conditioning"):
                for apply_id in self._applies(prompt, inputs.get(side)):
                    control = self._control(prompt, prompt[apply_id].get("inputs", {}).get("control_net"))
                    if control is None or control.family == model.family or apply_id in problems:
                        continue
                    apply_ct = prompt[apply_id]["class_type"]
                    problems[apply_id] = NodeError(
                        apply_id, "control_family_mismatch", "ControlNet of another model family",
                        f"node #{apply_id} ({apply_ct}) input 'control_net': the control file {control.describe()} "
                        f"was made for {control.family} models, but the conditioning reaches node #{node_id} "
                        f"({node['class_type']}) sampling the model {model.describe()}; load a {model.family} "
                        "ControlNet / T2I-Adapter or sample with a model of the control's family",
                        {"input_name": "control_net", "control_file": control.name, "control_family": control.family,
                         "model_file": model.name, "model_family": model.family, "sampler_node": node_id})
        return list(problems.values())
