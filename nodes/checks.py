"""Validation-time checks for the built-in nodes (the executor's `extra_checks` hook).

Beyond ComfyUI, before anything is allocated or loaded, from safetensors headers only (`nodes.check_facts`):
- a width / height / batch whose pixel count exceeds `NodeServices.max_pixels`;
- a text encoder whose width differs from the UNet's cross-attention width, a latent whose channel count differs
  from the UNet's, naming the nodes that disagree;
- a LoRA of whose UNet modules fewer than half fit the model it is applied to (by name and shape);
- CLIPTextEncodeSDXL / CLIPTextEncodeSDXLRefiner fed by a CLIP without the SDXL towers;
- a CLIPLoader / DualCLIPLoader `type` of ComfyUI's list that Loom has no text encoders for;
- conditioning or a latent made for another model family reaching a sampler.

Where a value comes from is found by one link walk (`trace`) back to the node that loaded it from a file. A loader
says which of its inputs name model files, and in which models folder, with a class attribute read through
`file_inputs` (``FILE_INPUTS = {"ckpt_name": "checkpoints"}``, see docs/custom-nodes.md); custom loaders that
declare it are checked like the built-in ones.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.families import base_family
from executor.registry import NodeRegistry
from executor.validation import NodeError
from nodes.check_facts import HeaderFacts, ModelFiles, UnetFacts
from nodes.loaders import CLIP_TYPES_LOADED, clip_type_problem
from nodes.services import NodeServices

__all__ = ["builtin_checks", "BuiltinChecks", "Origin", "file_inputs", "trace", "FOLDER_PROVIDES"]

Prompt = Mapping[str, Any]
ExtraCheck = Callable[[Prompt, Any], Sequence[NodeError]]

# the IO types a file in each models folder provides (a loader is where such a value comes from)
FOLDER_PROVIDES: Mapping[str, tuple[str, ...]] = {
    "checkpoints": ("MODEL", "CLIP", "VAE"), "diffusion_models": ("MODEL",), "text_encoders": ("CLIP",),
    "vae": ("VAE",), "controlnet": ("CONTROL_NET",), "clip_vision": ("CLIP_VISION",),
    "style_models": ("STYLE_MODEL",), "diffusers": ("MODEL", "CLIP", "VAE")}
# class -> (width input, height input, batch input or None); literal values only
_SIZED_NODES: dict[str, tuple[str, str, str | None]] = {
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "ImageScale": ("width", "height", None),
    "LatentUpscale": ("width", "height", None),
    "SolidMask": ("width", "height", None),
    "ImageCrop": ("width", "height", None),
}
# inputs a value of each type passes through unchanged (first linked one wins)
_PASS_THROUGH: Mapping[str, tuple[str, ...]] = {
    "MODEL": ("model", "model1"), "CLIP": ("clip", "clip1"), "VAE": ("vae",), "CONTROL_NET": ("control_net",),
    "CONDITIONING": ("conditioning", "conditioning_1", "conditioning_to", "positive"),
    "LATENT": ("samples", "latent_image", "samples_to", "latent")}
_SAMPLER_INPUTS = ("model", "positive", "negative", "latent_image")
_SDXL_TEXT = {"CLIPTextEncodeSDXL": ("sdxl",), "CLIPTextEncodeSDXLRefiner": ("sdxl", "sdxl_refiner")}
_LATENT_FORMAT = {"sd15": "sd1", "sd20": "sd1", "sdxl": "sdxl", "sdxl_refiner": "sdxl"}  # by base family
_MAX_HOPS = 64  # bounded: cycles are reported by validation itself


def builtin_checks(services: NodeServices) -> list[ExtraCheck]:
    """The extra checks to pass to `executor.validate_prompt(..., extra_checks=...)`."""
    from nodes.adapter_checks import AdapterFamilyCheck

    checks = BuiltinChecks(services)
    return [checks, AdapterFamilyCheck(services, checks.files, trace)]


def file_inputs(node_class: type | None) -> Mapping[str, str]:
    """A node class's declared model-file inputs: input name -> models folder (``{}`` when it declares none)."""
    declared = getattr(node_class, "FILE_INPUTS", None)  # optional attribute of the node contract
    return declared if isinstance(declared, Mapping) else {}


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)


def _is_sampler(inputs: Mapping[str, Any]) -> bool:
    return all(_is_link(inputs.get(name)) for name in _SAMPLER_INPUTS)


def _literal_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


@dataclass(frozen=True)
class Origin:
    """The loader node a MODEL / CLIP / VAE value comes from, with the model files it names."""

    node_id: str
    class_type: str
    kind: str
    inputs: Mapping[str, Any]
    files: tuple[tuple[str, str], ...]  # (models folder, file name) of the files providing `kind`

    @property
    def names(self) -> str:
        """The file names as the messages show them."""
        return " + ".join(name for _, name in self.files)


def trace(prompt: Prompt, registry: NodeRegistry | None, link: Any, kind: str) -> Origin | None:
    """Follow `link` (a value of IO type `kind`) back to the loader it comes from.

    A CONDITIONING comes from the CLIP of the node that encoded it, a LATENT from the VAE that encoded it or from
    the MODEL of the sampler that made it; other nodes pass a value of their output type through their first
    linked input of that type. None when the walk reaches anything else (an empty latent, an unknown node).
    """
    for _ in range(_MAX_HOPS):
        if not _is_link(link) or link[0] not in prompt:
            return None
        node_id, index = str(link[0]), link[1]
        node = prompt[node_id]
        ct, inputs = node.get("class_type", ""), node.get("inputs", {})
        node_class = registry.find(ct) if registry is not None else None
        returns = tuple(getattr(node_class, "RETURN_TYPES", ()))
        files = tuple((folder, str(inputs.get(name))) for name, folder in file_inputs(node_class).items()
                      if kind in FOLDER_PROVIDES.get(folder, ()))
        if files:
            ok = isinstance(index, int) and 0 <= index < len(returns) and returns[index] == kind
            return Origin(node_id, ct, kind, inputs, files) if ok else None
        if kind == "CONDITIONING" and _is_link(inputs.get("clip")):
            kind, link = "CLIP", inputs["clip"]
        elif kind == "LATENT" and _is_link(inputs.get("vae")):
            kind, link = "VAE", inputs["vae"]
        elif kind == "LATENT" and _is_sampler(inputs):
            kind, link = "MODEL", inputs["model"]
        elif kind == "CONDITIONING" and index == 1 and _is_link(inputs.get("negative")):
            link = inputs["negative"]
        else:
            link = next((inputs[n] for n in _PASS_THROUGH.get(kind, ()) if _is_link(inputs.get(n))), None)
    return None


class BuiltinChecks:
    """All validation-time checks of the built-in nodes, one pass over the prompt, sharing one header cache."""

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self.files = ModelFiles(services.paths)

    def __call__(self, prompt: Prompt, registry: NodeRegistry | None = None) -> list[NodeError]:
        problems: list[NodeError] = []
        self.files.new_pass()
        for node_id, node in prompt.items():
            if not isinstance(node, Mapping):
                continue
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            problems += self._size(node_id, ct, inputs)
            node_class = registry.find(ct) if registry is not None else None
            if ct in CLIP_TYPES_LOADED and getattr(node_class, "__module__", "").startswith("nodes."):
                problems += self._clip_type(node_id, ct, inputs)
            if _is_link(inputs.get("model")) and "loras" in file_inputs(node_class).values():
                problems += self._lora(prompt, registry, node_id, ct, inputs, node_class)
            elif ct in _SDXL_TEXT:
                problems += self._sdxl_text(prompt, registry, node_id, ct, inputs)
            elif _is_sampler(inputs):
                problems += self._sampler(prompt, registry, node_id, ct, inputs)
        return problems

    # ------------------------------------------------------------------ facts of an origin's files
    def _header(self, origin: Origin | None) -> HeaderFacts | None:
        """Header facts of the origin's file; for several text-encoder files, their summed width."""
        if origin is None:
            return None
        facts = [self.files.header(folder, name) for folder, name in origin.files]
        if any(f is None for f in facts) or not facts:
            return None
        if len(facts) == 1:
            return facts[0]
        widths = [f.text_width for f in facts if f is not None]
        return HeaderFacts({}, {}, text_width=sum(w for w in widths if w) if all(widths) else None)

    def _unet(self, origin: Origin | None) -> UnetFacts | None:
        if origin is None or origin.kind != "MODEL" or len(origin.files) != 1:
            return None
        folder, name = origin.files[0]
        return self.files.unet(folder, name, checkpoint=folder == "checkpoints")

    def _family(self, origin: Origin | None) -> str | None:
        """The model family of the origin's files (stand-alone VAE files do not say which family)."""
        if origin is None:
            return None
        folders = {folder for folder, _ in origin.files}
        if folders == {"checkpoints"}:
            facts = self.files.unet("checkpoints", origin.files[0][1], checkpoint=True)
            return facts.family if facts else None
        if origin.kind == "MODEL":
            unet = self._unet(origin)
            return unet.family if unet else None
        if folders == {"text_encoders"}:
            names = [name for _, name in origin.files]
            return self.files.text_encoder_family("text_encoders", names, str(origin.inputs.get("type", "")))
        return None

    @staticmethod
    def _describe(origin: Origin, family: str | None = None) -> str:
        tail = f", {family}" if family else ""
        return f"node #{origin.node_id} ({origin.class_type} '{origin.names}'{tail})"

    # ------------------------------------------------------------------ the checks
    def _size(self, node_id: str, ct: str, inputs: Mapping[str, Any]) -> list[NodeError]:
        spec = _SIZED_NODES.get(ct)
        if spec is None:
            return []
        limit = self.services.max_pixels
        w, h = _literal_int(inputs.get(spec[0])), _literal_int(inputs.get(spec[1]))
        if w is None or h is None:
            return []
        batch = _literal_int(inputs.get(spec[2])) if spec[2] else 1
        total = w * h * max(batch or 1, 1)
        if total <= limit:
            return []
        side = int(math.isqrt(limit))
        what = f"{w}x{h}" + (f" x batch {batch}" if spec[2] and batch and batch > 1 else "")
        return [NodeError(
            node_id, "image_too_large", "Image size too large",
            f"node #{node_id} ({ct}) inputs 'width'/'height': {what} = {total} pixels exceeds "
            f"the limit of {limit} pixels (about {side}x{side}); lower width/height/batch_size, or raise "
            "the limit (NodeServices.max_pixels)",
            {"input_name": spec[0] if w >= h else spec[1], "received_value": w if w >= h else h,
             "limit_pixels": limit})]

    @staticmethod
    def _clip_type(node_id: str, ct: str, inputs: Mapping[str, Any]) -> list[NodeError]:
        clip_type = inputs.get("type", "stable_diffusion" if ct == "CLIPLoader" else "sdxl")
        problem = clip_type_problem(ct, clip_type) if isinstance(clip_type, str) else None
        if problem is None:
            return []
        return [NodeError(node_id, "clip_type_unsupported", "Text encoder type not supported",
                          f"node #{node_id} ({ct}) input 'type': {problem}",
                          {"input_name": "type", "received_value": clip_type})]

    def _lora(self, prompt: Prompt, registry: NodeRegistry | None, node_id: str, ct: str,
              inputs: Mapping[str, Any], node_class: type | None) -> list[NodeError]:
        strength = inputs.get("strength_model", 1.0)
        if isinstance(strength, (int, float)) and strength == 0:
            return []
        input_name = next(n for n, folder in file_inputs(node_class).items() if folder == "loras")
        lora_name = inputs.get(input_name)
        lora = self.files.header("loras", lora_name)
        origin = trace(prompt, registry, inputs.get("model"), "MODEL")
        model = self._unet(origin)
        if lora is None or origin is None or model is None or model.unet_config is None:
            return []
        from engine.lora import lora_modules, match_lora, unet_lora_names_for

        unet_modules = {m for m in lora_modules(lora.shapes) if m.startswith("lora_unet_")}
        if not unet_modules:
            return []
        shapes = model.unet_shapes
        layers = sorted({k[: -len(".weight")] for k, s in shapes.items() if k.endswith(".weight") and len(s) >= 2})
        match = match_lora(lora.shapes, unet_lora_names_for(model.unet_config, layers), shapes)
        fit = sum(1 for m in match.matched if m in unet_modules)
        if fit * 2 >= len(unet_modules):
            return []
        return [NodeError(
            node_id, "lora_family_mismatch", "LoRA does not fit the model",
            f"node #{node_id} ({ct}) input '{input_name}': only {fit} of the {len(unet_modules)} UNet "
            f"modules of LoRA '{lora_name}' fit the model of {self._describe(origin, model.family)} "
            f"({len(match.wrong_shape)} have a known name but another shape); the LoRA was made for another model "
            "family: pick a LoRA trained for this model, or another checkpoint",
            {"input_name": input_name, "received_value": lora_name, "model_family": model.family,
             "model_node": origin.node_id, "unet_modules": len(unet_modules), "unet_modules_fitting": fit})]

    def _sdxl_text(self, prompt: Prompt, registry: NodeRegistry | None, node_id: str, ct: str,
                   inputs: Mapping[str, Any]) -> list[NodeError]:
        allowed = _SDXL_TEXT[ct]
        clip = trace(prompt, registry, inputs.get("clip"), "CLIP")
        family = self._family(clip)
        if clip is None or family is None or family in allowed:
            return []
        return [NodeError(
            node_id, "clip_family_mismatch", "Text encoder does not fit this node",
            f"node #{node_id} ({ct}) input 'clip': {ct} needs an SDXL CLIP ({' or '.join(allowed)}), but "
            f"{self._describe(clip, family)} gives a {family} CLIP; use CLIPTextEncode for this model or load an "
            "SDXL checkpoint",
            {"input_name": "clip", "clip_family": family, "clip_node": clip.node_id})]

    def _sampler(self, prompt: Prompt, registry: NodeRegistry | None, node_id: str, ct: str,
                 inputs: Mapping[str, Any]) -> list[NodeError]:
        """Width / channel mismatches first; a family mismatch only on an input without one (one error each)."""
        model = trace(prompt, registry, inputs.get("model"), "MODEL")
        if model is None:
            return []
        label = f"node #{node_id} ({ct})"
        model_facts, model_family = self._header(model), self._family(model)
        problems: list[NodeError] = []
        for name in ("positive", "negative"):
            clip = trace(prompt, registry, inputs.get(name), "CONDITIONING")
            context = model_facts.context_dim if model_facts else None
            width = facts.text_width if (facts := self._header(clip)) else None
            if clip and context and width and width != context:
                problems.append(NodeError(
                    node_id, "text_encoder_mismatch", "Text encoder does not match the model",
                    f"{label} input '{name}': the text encoder of {self._describe(clip)} gives width {width}, but "
                    f"the model of {self._describe(model)} expects context width {context}; use the CLIP "
                    "output of the same checkpoint as the model",
                    {"input_name": name, "text_width": width, "context_dim": context}))
                continue
            family = self._family(clip)
            if clip and family and model_family and base_family(family) != base_family(model_family):
                problems.append(NodeError(
                    node_id, "conditioning_family_mismatch", "Conditioning from another model family",
                    f"{label} input '{name}': the conditioning was encoded by {self._describe(clip, family)}, but "
                    f"the model comes from {self._describe(model, model_family)}; encode the prompt with the CLIP "
                    "of the model's family",
                    {"input_name": name, "conditioning_family": family, "model_family": model_family,
                     "clip_node": clip.node_id, "model_node": model.node_id}))
        problems += self._latent(prompt, registry, label, node_id, inputs, model, model_facts, model_family)
        return problems

    def _latent(self, prompt: Prompt, registry: NodeRegistry | None, label: str, node_id: str,
                inputs: Mapping[str, Any], model: Origin, model_facts: HeaderFacts | None,
                model_family: str | None) -> list[NodeError]:
        latent = trace(prompt, registry, inputs.get("latent_image"), "LATENT")
        if latent is None:
            return []
        channels = model_facts.latent_channels if model_facts else None
        facts = self._header(latent)
        got = (facts.vae_channels if latent.kind == "VAE" else facts.latent_channels) if facts else None
        if channels and got and got != channels:
            maker = "VAE" if latent.kind == "VAE" else "model"
            return [NodeError(
                node_id, "latent_channel_mismatch", "Latent does not match the model",
                f"{label} input 'latent_image': the {maker} of {self._describe(latent)} makes {got}-channel "
                f"latents, but the model of {self._describe(model)} works on {channels} channels; encode with "
                "the VAE that belongs to the model",
                {"input_name": "latent_image", "latent_channels": got, "model_channels": channels})]
        family = self._family(latent)
        latent_space = _LATENT_FORMAT.get(base_family(family)) if family else None
        model_space = _LATENT_FORMAT.get(base_family(model_family)) if model_family else None
        if family and model_family and latent_space != model_space:
            return [NodeError(
                node_id, "latent_family_mismatch", "Latent from another model family",
                f"{label} input 'latent_image': the latent comes from {self._describe(latent, family)} "
                f"({latent_space} latent space), but the model of "
                f"{self._describe(model, model_family)} works in the {model_space} latent "
                "space; decode it with its own VAE and encode it with this model's VAE",
                {"input_name": "latent_image", "latent_family": family, "model_family": model_family})]
        return []
