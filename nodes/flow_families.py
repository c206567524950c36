"""Flow-family nodes (Flux.1, SD3.x): model-sampling shifts, distilled guidance, Flux text encode, SD3 latents."""
from __future__ import annotations

from typing import Any

from nodes._base import BuiltinNode, input_error
from nodes.conditioning import set_values
from nodes.services import MAX_RESOLUTION

__all__ = ["EmptySD3LatentImage", "FluxGuidance", "FluxDisableGuidance", "CLIPTextEncodeFlux",
           "ModelSamplingFlux", "ModelSamplingSD3", "ModelSamplingAuraFlow", "NODES"]

Conditioning = list[list[Any]]


class EmptySD3LatentImage(BuiltinNode):
    """Zeros ``[batch, 16, height//8, width//8]`` (the SD3 / Flux latent)."""

    DISPLAY_NAME = "EmptySD3LatentImage"
    CATEGORY = "latent/sd3"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        import torch

        return ({"samples": torch.zeros([batch_size, 16, height // 8, width // 8])},)


class FluxGuidance(BuiltinNode):
    """Set the distilled guidance strength Flux-dev embeds (no effect on schnell)."""

    DISPLAY_NAME = "FluxGuidance"
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    def append(self, conditioning: Conditioning, guidance: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"guidance": guidance}),)


class FluxDisableGuidance(BuiltinNode):
    """Remove the guidance embedding from the model call entirely."""

    DISPLAY_NAME = "FluxDisableGuidance"
    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node completely disables the guidance embed on Flux and Flux like models"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def append(self, conditioning: Conditioning) -> tuple[Conditioning]:
        return (set_values(conditioning, {"guidance": None}),)


class CLIPTextEncodeFlux(BuiltinNode):
    """Encode separate CLIP-L and T5 prompts with a Flux CLIP, and set the guidance."""

    DISPLAY_NAME = "CLIPTextEncodeFlux"
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "clip": ("CLIP",),
            "clip_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "t5xxl": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
        }}

    def encode(self, clip: Any, clip_l: str, t5xxl: str, guidance: float) -> tuple[Conditioning]:
        if clip is None:
            raise input_error("CLIPTextEncodeFlux", "clip", "no CLIP connected (the loader returned none)")
        tokens = clip.tokenize(clip_l)
        if "t5xxl" not in tokens:
            raise input_error("CLIPTextEncodeFlux", "clip", "this CLIP has no T5 encoder; load clip_l + t5xxl "
                              "with DualCLIPLoader type flux")
        tokens["t5xxl"] = clip.tokenize(t5xxl)["t5xxl"]
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance}),)


def _shift_input(default: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.01})


def _flow_patch(model: Any, sampling: Any) -> Any:
    if getattr(model.model_sampling, "prediction", None) != "flow":
        raise ValueError(f"this node needs a flow-matching model (SD3 / Flux / AuraFlow); the model has "
                         f"{model.model_sampling!r}")
    patched = model.clone()
    patched.model_sampling = sampling
    return patched


class ModelSamplingSD3(BuiltinNode):
    """Discrete flow schedule with a time shift (SD3: 3.0); the network's timestep is sigma x 1000."""

    DISPLAY_NAME = "ModelSamplingSD3"
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    MULTIPLIER = 1000.0

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "shift": _shift_input(3.0)}}

    def patch(self, model: Any, shift: float) -> tuple[Any]:
        from engine.sampling.flow_sampling import ModelSamplingDiscreteFlow

        try:
            return (_flow_patch(model, ModelSamplingDiscreteFlow(shift, self.MULTIPLIER)),)
        except ValueError as exc:
            raise input_error(type(self).__name__, "model", str(exc)) from exc


class ModelSamplingAuraFlow(ModelSamplingSD3):
    """Discrete flow schedule with a time shift and timestep = sigma (AuraFlow: 1.73)."""

    DISPLAY_NAME = "ModelSamplingAuraFlow"
    FUNCTION = "patch_aura"
    MULTIPLIER = 1.0

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "shift": _shift_input(1.73)}}

    def patch_aura(self, model: Any, shift: float) -> tuple[Any]:
        return self.patch(model, shift)


class ModelSamplingFlux(BuiltinNode):
    """Flux's resolution-dependent shift: linear in the image's 16x16-patch count from base to max shift."""

    DISPLAY_NAME = "ModelSamplingFlux"
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "max_shift": _shift_input(1.15),
            "base_shift": _shift_input(0.5),
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
        }}

    def patch(self, model: Any, max_shift: float, base_shift: float, width: int, height: int) -> tuple[Any]:
        from engine.sampling.flow_sampling import ModelSamplingFlux as Sampling
        from engine.sampling.flow_sampling import flux_resolution_shift

        try:
            return (_flow_patch(model, Sampling(flux_resolution_shift(width, height, max_shift, base_shift))),)
        except ValueError as exc:
            raise input_error("ModelSamplingFlux", "model", str(exc)) from exc


NODES = [EmptySD3LatentImage, FluxGuidance, FluxDisableGuidance, CLIPTextEncodeFlux, ModelSamplingFlux,
         ModelSamplingSD3, ModelSamplingAuraFlow]
