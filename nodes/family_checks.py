"""Validation-time model-family checks (the executor's `extra_checks` hook), from safetensors headers only.

Beyond ComfyUI, before anything loads or runs:
- a LoRA of whose UNet modules fewer than half fit the model it is applied to (by name and shape; e.g. an SDXL
  LoRA on an SD1.5 model, where a few attention layers happen to share names and shapes), naming the LoRA node,
  the LoRA file and the model's file;
- CLIPTextEncodeSDXL / CLIPTextEncodeSDXLRefiner fed by a CLIP without the SDXL towers;
- conditioning or a latent made for another family reaching a sampler.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executor.validation import NodeError
from nodes.checks import ModelCompatibilityCheck, read_safetensors_header
from nodes.services import NodeServices

__all__ = ["FamilyCheck", "FileFacts"]

Prompt = Mapping[str, Any]
_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_MODEL_LOADERS = {"CheckpointLoaderSimple": ("ckpt_name", "checkpoints"), "CheckpointLoader": ("ckpt_name", "checkpoints"),
                  "UNETLoader": ("unet_name", "diffusion_models")}
_CLIP_LOADERS = {"CheckpointLoaderSimple": ("ckpt_name",), "CheckpointLoader": ("ckpt_name",),
                 "CLIPLoader": ("clip_name",), "DualCLIPLoader": ("clip_name1", "clip_name2")}
_LORA_NODES = ("LoraLoader", "LoraLoaderModelOnly")
_SDXL_TEXT = {"CLIPTextEncodeSDXL": ("sdxl",), "CLIPTextEncodeSDXLRefiner": ("sdxl", "sdxl_refiner")}
_TEXT_NODES = ("CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner")
_LATENT_FORMAT = {"sd15": "sd1", "sd20": "sd1", "sdxl": "sdxl", "sdxl_refiner": "sdxl"}


@dataclass(frozen=True)
class FileFacts:
    """What a model file's header says: family name, and for UNets the parameter shapes (prefix removed)."""

    family: str
    unet_config: Any = None
    unet_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """The loader node a value comes from, with its file and family."""

    node_id: str
    class_type: str
    file: str
    family: str
    facts: FileFacts | None = None

    def describe(self) -> str:
        return f"node #{self.node_id} ({self.class_type} '{self.file}', {self.family})"


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)


def _shapes(header: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v["shape"]) for k, v in header.items() if isinstance(v, dict) and isinstance(v.get("shape"), list)}


def _unet_facts(shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str], prefix: str) -> FileFacts:
    from engine.detect import detect_family_of_unet

    unet = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    family, cfg, _ = detect_family_of_unet(unet, metadata)
    return FileFacts(family.name, cfg, unet)


@dataclass
class FamilyCheck:
    """LoRA fit, SDXL text nodes and cross-family conditioning / latents, from the loaders' file headers."""

    services: NodeServices

    def __post_init__(self) -> None:
        self._cache: dict[tuple[str, str, float], FileFacts | None] = {}
        # the width / channel check reports some of the same mistakes; one error per sampler input is enough
        self._widths = ModelCompatibilityCheck(self.services)

    # ------------------------------------------------------------------ file facts (cached by path + mtime)
    def _path(self, folder: str, name: Any) -> str | None:
        if not isinstance(name, str):
            return None
        try:
            path = self.services.paths.get_full_path(folder, name)
        except ValueError:
            return None
        return path if path and path.endswith((".safetensors", ".sft")) else None

    def _facts(self, kind: str, folder: str, name: Any, extra: str = "") -> FileFacts | None:
        path = self._path(folder, name)
        if path is None:
            return None
        key = (kind + extra, path, os.path.getmtime(path))
        if key not in self._cache:
            try:
                header = read_safetensors_header(path)
                self._cache[key] = self._read(kind, header, extra)
            except Exception:  # unreadable or unknown layouts are reported by the loader node itself
                self._cache[key] = None
        return self._cache[key]

    @staticmethod
    def _read(kind: str, header: Mapping[str, Any], extra: str) -> FileFacts | None:
        metadata = header.get("__metadata__") or {}
        shapes = _shapes(header)
        if kind == "checkpoint":
            return _unet_facts(shapes, metadata, "model.diffusion_model.")
        if kind == "unet":
            prefix = "model.diffusion_model." if "model.diffusion_model.input_blocks.0.0.weight" in shapes else ""
            return _unet_facts(shapes, metadata, prefix)
        if kind == "clip":
            from engine.clip_files import classify_towers, tower_layout

            layout = tower_layout(shapes)
            if layout is None:
                return None
            family, _ = classify_towers(extra, [layout], ["file"])
            return FileFacts(family.name)
        if kind == "lora":
            return FileFacts("lora", None, shapes)
        return None

    # ------------------------------------------------------------------ tracing links back to loaders
    def _model_source(self, prompt: Prompt, link: Any) -> Source | None:
        for _ in range(64):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node_id, node = link[0], prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _MODEL_LOADERS and link[1] == 0:
                input_name, folder = _MODEL_LOADERS[ct]
                facts = self._facts("unet" if ct == "UNETLoader" else "checkpoint", folder, inputs.get(input_name))
                return Source(node_id, ct, inputs.get(input_name), facts.family, facts) if facts else None
            link = inputs.get("model")
        return None

    def _clip_source(self, prompt: Prompt, link: Any) -> Source | None:
        for _ in range(64):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node_id, node = link[0], prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _CLIP_LOADERS:
                names = [inputs.get(n) for n in _CLIP_LOADERS[ct]]
                if ct.startswith("Checkpoint"):
                    facts = self._facts("checkpoint", "checkpoints", names[0])
                elif ct == "DualCLIPLoader":
                    ok = inputs.get("type") == "sdxl" and all(self._path("text_encoders", n) for n in names)
                    facts = FileFacts("sdxl") if ok else None
                else:
                    facts = self._facts("clip", "text_encoders", names[0], str(inputs.get("type", "")))
                return Source(node_id, ct, " + ".join(str(n) for n in names), facts.family) if facts else None
            link = inputs.get("clip")
        return None

    def _cond_source(self, prompt: Prompt, link: Any) -> Source | None:
        for _ in range(64):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node = prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _TEXT_NODES:
                return self._clip_source(prompt, inputs.get("clip"))
            if ct in _SAMPLERS or ct.startswith(("Checkpoint", "Load")):
                return None
            link = next((inputs[n] for n in ("conditioning", "conditioning_to", "conditioning_1", "positive")
                         if _is_link(inputs.get(n))), None)
        return None

    def _latent_source(self, prompt: Prompt, link: Any) -> Source | None:
        for _ in range(64):
            if not _is_link(link) or link[0] not in prompt:
                return None
            node = prompt[link[0]]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _SAMPLERS:
                return self._model_source(prompt, inputs.get("model"))
            if ct.startswith("VAEEncode") or ct == "InpaintModelConditioning":
                return self._vae_source(prompt, inputs.get("vae"))
            link = next((inputs[n] for n in ("samples", "latent_image", "samples_to", "latent")
                         if _is_link(inputs.get(n))), None)
        return None

    def _vae_source(self, prompt: Prompt, link: Any) -> Source | None:
        if not _is_link(link) or link[0] not in prompt:
            return None
        node = prompt[link[0]]
        ct, inputs = node.get("class_type", ""), node.get("inputs", {})
        if ct.startswith("Checkpoint") and link[1] == 2:
            facts = self._facts("checkpoint", "checkpoints", inputs.get("ckpt_name"))
            return Source(link[0], ct, inputs.get("ckpt_name"), facts.family) if facts else None
        return None  # stand-alone VAE files do not say which family they belong to

    # ------------------------------------------------------------------ the checks
    def _lora(self, prompt: Prompt, node_id: str, node: Mapping[str, Any]) -> list[NodeError]:
        inputs = node.get("inputs", {})
        strength = inputs.get("strength_model", 1.0)
        if isinstance(strength, (int, float)) and strength == 0:
            return []
        lora = self._facts("lora", "loras", inputs.get("lora_name"))
        model = self._model_source(prompt, inputs.get("model"))
        if lora is None or model is None or model.facts is None or model.facts.unet_config is None:
            return []
        from engine.lora import lora_modules, match_lora, unet_lora_names_for

        unet_modules = {m for m in lora_modules(lora.unet_shapes) if m.startswith("lora_unet_")}
        if not unet_modules:
            return []
        shapes = model.facts.unet_shapes
        layers = sorted({k[: -len(".weight")] for k, s in shapes.items() if k.endswith(".weight") and len(s) >= 2})
        match = match_lora(lora.unet_shapes, unet_lora_names_for(model.facts.unet_config, layers), shapes)
        fit = sum(1 for m in match.matched if m in unet_modules)
        if fit * 2 >= len(unet_modules):
            return []
        return [NodeError(
            node_id, "lora_family_mismatch", "LoRA does not fit the model",
            f"node #{node_id} ({node['class_type']}) input 'lora_name': only {fit} of the {len(unet_modules)} UNet "
            f"modules of LoRA '{inputs.get('lora_name')}' fit the model of {model.describe()} "
            f"({len(match.wrong_shape)} have a known name but another shape); the LoRA was made for another model "
            "family: pick a LoRA trained for this model, or another checkpoint",
            {"input_name": "lora_name", "received_value": inputs.get("lora_name"), "model_family": model.family,
             "model_node": model.node_id, "unet_modules": len(unet_modules), "unet_modules_fitting": fit})]

    def _sdxl_text(self, prompt: Prompt, node_id: str, node: Mapping[str, Any]) -> list[NodeError]:
        allowed = _SDXL_TEXT[node["class_type"]]
        clip = self._clip_source(prompt, node.get("inputs", {}).get("clip"))
        if clip is None or clip.family in allowed:
            return []
        return [NodeError(
            node_id, "clip_family_mismatch", "Text encoder does not fit this node",
            f"node #{node_id} ({node['class_type']}) input 'clip': {node['class_type']} needs an SDXL CLIP "
            f"({' or '.join(allowed)}), but {clip.describe()} gives a {clip.family} CLIP; use CLIPTextEncode for "
            "this model or load an SDXL checkpoint",
            {"input_name": "clip", "clip_family": clip.family, "clip_node": clip.node_id})]

    def _sampler(self, prompt: Prompt, node_id: str, node: Mapping[str, Any]) -> list[NodeError]:
        inputs = node.get("inputs", {})
        model = self._model_source(prompt, inputs.get("model"))
        if model is None:
            return []
        problems: list[NodeError] = []
        label = f"node #{node_id} ({node['class_type']})"
        for name in ("positive", "negative"):
            clip = self._cond_source(prompt, inputs.get(name))
            if clip is not None and clip.family != model.family:
                problems.append(NodeError(
                    node_id, "conditioning_family_mismatch", "Conditioning from another model family",
                    f"{label} input '{name}': the conditioning was encoded by {clip.describe()}, but the model "
                    f"comes from {model.describe()}; encode the prompt with the CLIP of the model's family",
                    {"input_name": name, "conditioning_family": clip.family, "model_family": model.family,
                     "clip_node": clip.node_id, "model_node": model.node_id}))
        latent = self._latent_source(prompt, inputs.get("latent_image"))
        if latent is not None and _LATENT_FORMAT.get(latent.family) != _LATENT_FORMAT.get(model.family):
            problems.append(NodeError(
                node_id, "latent_family_mismatch", "Latent from another model family",
                f"{label} input 'latent_image': the latent comes from {latent.describe()} "
                f"({_LATENT_FORMAT.get(latent.family)} latent space), but the model of {model.describe()} works in "
                f"the {_LATENT_FORMAT.get(model.family)} latent space; decode it with its own VAE and encode it "
                "with this model's VAE",
                {"input_name": "latent_image", "latent_family": latent.family, "model_family": model.family}))
        return problems

    def __call__(self, prompt: Prompt, registry: Any = None) -> list[NodeError]:
        problems: list[NodeError] = []
        reported = {(e.node_id, e.extra_info.get("input_name")) for e in self._widths(prompt, registry)}
        for node_id, node in prompt.items():
            ct = node.get("class_type") if isinstance(node, Mapping) else None
            if ct in _LORA_NODES:
                problems += self._lora(prompt, node_id, node)
            elif ct in _SDXL_TEXT:
                problems += self._sdxl_text(prompt, node_id, node)
            elif ct in _SAMPLERS:
                problems += [e for e in self._sampler(prompt, node_id, node)
                             if (e.node_id, e.extra_info.get("input_name")) not in reported]
        return problems
