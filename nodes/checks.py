"""Validation-time checks for the built-in nodes (the executor's `extra_checks` hook).

Beyond ComfyUI: catch, before anything is allocated or loaded,
- a width / height / batch whose pixel count exceeds `NodeServices.max_pixels`;
- a text encoder whose width differs from the UNet's cross-attention context width, and a latent whose
  channel count differs from the UNet's, where that is knowable from safetensors headers (read without
  loading any tensor), naming the nodes that disagree.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from executor.validation import NodeError
from nodes.services import NodeServices

__all__ = ["builtin_checks", "SizeCheck", "ModelCompatibilityCheck", "read_safetensors_header"]

Prompt = Mapping[str, Any]
ExtraCheck = Callable[[Prompt, Any], Sequence[NodeError]]

# class -> (width input, height input, batch input or None); literal values only
_SIZED_NODES: dict[str, tuple[str, str, str | None]] = {
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "ImageScale": ("width", "height", None),
    "LatentUpscale": ("width", "height", None),
    "SolidMask": ("width", "height", None),
    "ImageCrop": ("width", "height", None),
}
_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_HEADER_LIMIT = 100 * 1024 * 1024


def builtin_checks(services: NodeServices) -> list[ExtraCheck]:
    """The extra checks to pass to `executor.validate_prompt(..., extra_checks=...)`."""
    from nodes.adapter_checks import AdapterFamilyCheck
    from nodes.family_checks import FamilyCheck

    return [SizeCheck(services), ModelCompatibilityCheck(services), FamilyCheck(services), AdapterFamilyCheck(services)]


def _literal_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


@dataclass
class SizeCheck:
    """Refuse image / latent sizes above `services.max_pixels` before allocation."""

    services: NodeServices

    def __call__(self, prompt: Prompt, registry: Any = None) -> list[NodeError]:
        limit = self.services.max_pixels
        side = int(math.isqrt(limit))
        problems = []
        for node_id, node in prompt.items():
            spec = _SIZED_NODES.get(node.get("class_type", ""))
            if spec is None:
                continue
            inputs = node.get("inputs", {})
            w, h = _literal_int(inputs.get(spec[0])), _literal_int(inputs.get(spec[1]))
            if w is None or h is None:
                continue
            batch = _literal_int(inputs.get(spec[2])) if spec[2] else 1
            total = w * h * max(batch or 1, 1)
            if total <= limit:
                continue
            what = f"{w}x{h}" + (f" x batch {batch}" if spec[2] and batch and batch > 1 else "")
            problems.append(NodeError(
                node_id, "image_too_large", "Image size too large",
                f"node #{node_id} ({node['class_type']}) inputs 'width'/'height': {what} = {total} pixels exceeds "
                f"the limit of {limit} pixels (about {side}x{side}); lower width/height/batch_size, or raise "
                "the limit (NodeServices.max_pixels)",
                {"input_name": spec[0] if w >= h else spec[1], "received_value": w if w >= h else h,
                 "limit_pixels": limit}))
        return problems


def read_safetensors_header(path: str) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names -> dtype/shape); no tensor data is read."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > _HEADER_LIMIT:
            raise ValueError(f"{path}: safetensors header of {length} bytes is implausible")
        header: dict[str, Any] = json.loads(fh.read(length))
    return header


@dataclass(frozen=True)
class _ModelFacts:
    latent_channels: int | None = None
    context_dim: int | None = None
    text_width: int | None = None
    vae_channels: int | None = None


def _facts_from_header(header: Mapping[str, Any]) -> _ModelFacts:
    shapes: dict[str, list[int]] = {k: list(v["shape"]) for k, v in header.items()
                                    if isinstance(v, dict) and isinstance(v.get("shape"), list)}
    unet_prefix = next((p for p in ("model.diffusion_model.", "") if f"{p}out.2.weight" in shapes), None)
    latent = context = None
    if unet_prefix is not None:
        latent = int(shapes[f"{unet_prefix}out.2.weight"][0])
        to_k = sorted(k for k in shapes if k.startswith(unet_prefix) and k.endswith("attn2.to_k.weight"))
        if to_k:
            context = int(shapes[to_k[0]][1])
    widths = [int(shapes[k][0]) for k in sorted(shapes)
              if k.endswith(("text_model.final_layer_norm.weight", "ln_final.weight"))]
    vae = next((int(shapes[f"{p}decoder.conv_in.weight"][1]) for p in ("first_stage_model.", "", "vae.")
                if f"{p}decoder.conv_in.weight" in shapes), None)
    return _ModelFacts(latent, context, sum(widths) if widths else None, vae)


@dataclass(frozen=True)
class _Source:
    node_id: str
    class_type: str
    file: str
    facts: _ModelFacts

    def describe(self) -> str:
        return f"node #{self.node_id} ({self.class_type} '{self.file}')"


_LOADER_FOLDERS = {"CheckpointLoaderSimple": ("ckpt_name", "checkpoints"),
                   "UNETLoader": ("unet_name", "diffusion_models"),
                   "CLIPLoader": ("clip_name", "text_encoders"),
                   "VAELoader": ("vae_name", "vae")}
_FOLLOW = {"MODEL": ("model",), "CLIP": ("clip",), "VAE": ("vae",),
           "CONDITIONING": ("conditioning", "conditioning_1", "conditioning_to", "positive"),
           "LATENT": ("samples", "latent_image", "samples_to", "latent")}


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)


@dataclass
class ModelCompatibilityCheck:
    """Text encoder width vs UNet context, latent channels vs UNet, from the loaders' file headers."""

    services: NodeServices

    def __post_init__(self) -> None:
        self._cache: dict[tuple[str, float], _ModelFacts] = {}

    def _facts(self, folder: str, name: str) -> _ModelFacts | None:
        try:
            path = self.services.paths.get_full_path(folder, name)
        except ValueError:
            return None
        if path is None or not path.endswith((".safetensors", ".sft")):
            return None
        key = (path, os.path.getmtime(path))
        if key not in self._cache:
            try:
                self._cache[key] = _facts_from_header(read_safetensors_header(path))
            except (OSError, ValueError):
                return None
        return self._cache[key]

    def _trace(self, prompt: Prompt, link: Any, kind: str) -> _Source | None:
        """Follow a link back through pass-through nodes to the loader that produced `kind`."""
        for _ in range(64):  # bounded: cycles are reported by validation itself
            if not _is_link(link) or link[0] not in prompt:
                return None
            node_id, index = link[0], link[1]
            node = prompt[node_id]
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if ct in _LOADER_FOLDERS:
                input_name, folder = _LOADER_FOLDERS[ct]
                name = inputs.get(input_name)
                facts = self._facts(folder, name) if isinstance(name, str) else None
                return _Source(node_id, ct, name, facts) if facts else None
            if kind == "CONDITIONING" and ct == "CLIPTextEncode":
                kind, link = "CLIP", inputs.get("clip")
                continue
            if kind == "CONDITIONING" and ct == "InpaintModelConditioning":
                link = inputs.get("positive" if index == 0 else "negative")
                continue
            if kind == "LATENT" and (ct.startswith("VAEEncode") or ct == "InpaintModelConditioning"):
                kind, link = "VAE", inputs.get("vae")
                continue
            link = next((inputs[n] for n in _FOLLOW[kind] if _is_link(inputs.get(n))), None)
        return None

    def __call__(self, prompt: Prompt, registry: Any = None) -> list[NodeError]:
        problems: list[NodeError] = []
        for node_id, node in prompt.items():
            if node.get("class_type") not in _SAMPLERS:
                continue
            inputs = node.get("inputs", {})
            model = self._trace(prompt, inputs.get("model"), "MODEL")
            if model is None:
                continue
            label = f"node #{node_id} ({node['class_type']})"
            context = model.facts.context_dim
            for name in ("positive", "negative"):
                clip = self._trace(prompt, inputs.get(name), "CONDITIONING")
                width = clip.facts.text_width if clip else None
                if clip and context and width and width != context:
                    problems.append(NodeError(
                        node_id, "text_encoder_mismatch", "Text encoder does not match the model",
                        f"{label} input '{name}': the text encoder of {clip.describe()} gives width {width}, but "
                        f"the model of {model.describe()} expects context width {context}; use the CLIP "
                        "output of the same checkpoint as the model",
                        {"input_name": name, "text_width": width, "context_dim": context}))
            channels = model.facts.latent_channels
            latent = self._trace(prompt, inputs.get("latent_image"), "LATENT")
            got = latent.facts.vae_channels if latent else None
            if latent and channels and got and got != channels:
                problems.append(NodeError(
                    node_id, "latent_channel_mismatch", "Latent does not match the model",
                    f"{label} input 'latent_image': the VAE of {latent.describe()} makes {got}-channel latents, "
                    f"but the model of {model.describe()} works on {channels} channels; encode with the VAE "
                    "that belongs to the model",
                    {"input_name": "latent_image", "latent_channels": got, "model_channels": channels}))
        return problems
