"""Validation-time adapter checks (the executor's `extra_checks` hook), from safetensors headers only.

Beyond ComfyUI, before anything loads or runs, errors that name both files instead of a shape error mid-run:
- a ControlNet / T2I-Adapter applied to conditioning that reaches a sampler whose model is of another family (an
  SDXL ControlNet on an SD1.5 model), on the apply node;
- an IP-Adapter file (from `IPAdapterModelLoader`, any pack node taking `ipadapter`) whose cross-attention width is
  not the model's, or whose image projection does not take the CLIP vision model's embeds (a ViT-bigG encoder into
  an SD1.5 ViT-H IP-Adapter), on the node using them.
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

    def _fact(self, kind: str, folder: str, name: Any, prefix: str = "") -> str | None:
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
        if kind == "ipadapter":
            k = shapes.get("ip_adapter.1.to_k_ip.weight")
            wants = shapes.get("image_proj.proj.weight") or shapes.get("image_proj.proj_in.weight")
            return f"{k[1]}:{wants[1] if wants else 0}" if k else None
        if kind == "clip_vision":
            proj = shapes.get("visual_projection.weight")
            hidden = shapes.get("vision_model.embeddings.patch_embedding.weight")
            if proj is None and "visual.proj" in shapes:
                proj, hidden = shapes["visual.proj"][::-1], shapes.get("visual.conv1.weight")
            return f"{proj[0] if proj else 0}:{hidden[0] if hidden else 0}"
        if kind == "context":
            return next((str(s[1]) for k, s in shapes.items() if k.startswith(prefix) and k.endswith("attn2.to_k.weight")),
                        None)
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
                family = self._fact("unet", folder, inputs.get(input_name), prefix)
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
                family = self._fact("control", "controlnet", inputs.get("control_net_name"))
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

    def _loader(self, prompt: Prompt, link: Any, class_type: str) -> tuple[str, Mapping[str, Any]] | None:
        if not _is_link(link) or link[0] not in prompt or prompt[link[0]].get("class_type") != class_type:
            return None
        return link[0], prompt[link[0]].get("inputs", {})

    def _ipadapter(self, prompt: Prompt, node_id: str, node: Mapping[str, Any]) -> list[NodeError]:
        inputs = node.get("inputs", {})
        loader = self._loader(prompt, inputs.get("ipadapter"), "IPAdapterModelLoader")
        if loader is None:
            return []
        name = loader[1].get("ipadapter_file")
        facts = self._fact("ipadapter", "ipadapter", name)
        if facts is None:
            return []
        cross, wants = (int(v) for v in facts.split(":"))
        label = f"node #{node_id} ({node['class_type']})"
        problems = []
        model = self._model(prompt, inputs.get("model"))
        if model is not None:
            loader_ct = prompt[model.node_id]["class_type"]
            input_name, folder, prefix = _MODEL_LOADERS[loader_ct]
            context = self._fact("context", folder, model.name, prefix)
            if context is not None and int(context) != cross:
                problems.append(NodeError(
                    node_id, "ipadapter_family_mismatch", "IP-Adapter of another model family",
                    f"{label} input 'ipadapter': the IP-Adapter '{name}' (node #{loader[0]}) writes {cross}-wide "
                    f"image tokens, but the model {model.describe()} cross-attends over {context}-wide context; "
                    f"use the IP-Adapter made for {model.family} models",
                    {"input_name": "ipadapter", "ipadapter_file": name, "ipadapter_cross_attention_dim": cross,
                     "model_file": model.name, "model_family": model.family, "model_context_dim": int(context)}))
        vision = self._loader(prompt, inputs.get("clip_vision"), "CLIPVisionLoader")
        if vision is not None and wants:
            clip_name = vision[1].get("clip_name")
            dims = self._fact("clip_vision", "clip_vision", clip_name)
            if dims is not None and wants not in (int(d) for d in dims.split(":")):
                problems.append(NodeError(
                    node_id, "clip_vision_mismatch", "CLIP vision model does not fit the IP-Adapter",
                    f"{label} input 'clip_vision': the IP-Adapter '{name}' takes {wants}-wide image embeds, but the "
                    f"CLIP vision model '{clip_name}' (node #{vision[0]}) gives {dims.replace(':', ' (projected) / ')}"
                    " (hidden); use the image encoder the IP-Adapter was trained with (ViT-H for most SD1.5 ones)",
                    {"input_name": "clip_vision", "ipadapter_file": name, "clip_vision_file": clip_name,
                     "ipadapter_embed_dim": wants}))
        return problems

    def __call__(self, prompt: Prompt, registry: Any = None) -> list[NodeError]:
        problems: dict[str, NodeError] = {}
        ip_problems: list[NodeError] = []
        for node_id, node in prompt.items():
            if isinstance(node, Mapping) and "ipadapter" in node.get("inputs", {}):
                ip_problems += self._ipadapter(prompt, node_id, node)
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
        return list(problems.values()) + ip_problems
