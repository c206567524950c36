"""CLIP vision and style model nodes (ComfyUI's names): encode images with a CLIP vision tower, append a
style adapter's tokens to the conditioning."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from nodes._base import BuiltinNode, InputTypes, input_error, progress_context
from nodes.loaders import load_model_file

if TYPE_CHECKING:
    import torch

__all__ = ["CLIPVisionLoader", "CLIPVisionEncode", "StyleModelLoader", "StyleModelApply", "unCLIPConditioning"]

Conditioning = list[list[Any]]


class CLIPVisionLoader(BuiltinNode):
    """Load a CLIP vision model (HF CLIPVisionModelWithProjection or OpenCLIP `visual.*`).

    Parameters:
        clip_name: a file in `models/clip_vision`.
    """

    DISPLAY_NAME = "Load CLIP Vision"
    CATEGORY = "loaders"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"clip_name": "clip_vision"}
    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip_name": (cls._services().paths.get_filename_list("clip_vision"),)}}

    def load_clip(self, clip_name: str) -> tuple[Any]:
        from engine.adapters.clip_vision import load_clip_vision

        return (load_model_file("CLIPVisionLoader", self._services(), "clip_vision", "clip_name", clip_name,
                                load_clip_vision),)


class CLIPVisionEncode(BuiltinNode):
    """Encode images with CLIP vision: last hidden state, penultimate hidden states and image embeds.

    Parameters:
        clip_vision: a CLIP_VISION.
        image: IMAGE [B,H,W,C] 0..1; resized (bicubic, antialiased) to the tower's size.
        crop: "center" keeps the aspect ratio and crops the middle; "none" stretches.
    """

    DISPLAY_NAME = "CLIP Vision Encode"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip_vision": ("CLIP_VISION",), "image": ("IMAGE",), "crop": (["center", "none"],)}}

    def encode(self, clip_vision: Any, image: torch.Tensor, crop: str) -> tuple[Any]:
        import torch

        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise input_error("CLIPVisionEncode", "image", "expected an IMAGE tensor [B,H,W,C]")
        if not hasattr(clip_vision, "encode_image"):
            raise input_error("CLIPVisionEncode", "clip_vision",
                              f"expected a CLIP_VISION from CLIPVisionLoader, got {type(clip_vision).__name__}")
        return (clip_vision.encode_image(image, crop=crop == "center"),)


class StyleModelLoader(BuiltinNode):
    """Load a T2I style adapter (coadapter-style).

    Parameters:
        style_model_name: a file in `models/style_models`.
    """

    DISPLAY_NAME = "Load Style Model"
    CATEGORY = "loaders"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"style_model_name": "style_models"}
    RETURN_TYPES = ("STYLE_MODEL",)
    FUNCTION = "load_style_model"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"style_model_name": (cls._services().paths.get_filename_list("style_models"),)}}

    def load_style_model(self, style_model_name: str) -> tuple[Any]:
        from engine.adapters.style import load_style_model

        return (load_model_file("StyleModelLoader", self._services(), "style_models", "style_model_name",
                                style_model_name, load_style_model),)


class StyleModelApply(BuiltinNode):
    """Append a style model's tokens (from a CLIP vision output) to every conditioning entry.

    Parameters:
        conditioning: CONDITIONING to extend.
        style_model: a STYLE_MODEL.
        clip_vision_output: CLIPVisionEncode's output.
        strength: token multiplier (`multiply`) or attention bias log(strength) (`attn_bias`).
        strength_type: "multiply" or "attn_bias".
    """

    DISPLAY_NAME = "Apply Style Model"
    CATEGORY = "conditioning/style_model"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_stylemodel"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",), "style_model": ("STYLE_MODEL",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
                             "strength_type": (["multiply", "attn_bias"],)}}

    def apply_stylemodel(self, conditioning: Conditioning, style_model: Any, clip_vision_output: Any,
                         strength: float, strength_type: str) -> tuple[Conditioning]:
        from engine.adapters.style import apply_style

        tokens = style_model.get_cond(clip_vision_output)
        for k, (txt, _) in enumerate(conditioning):
            if txt.shape[-1] != tokens.shape[-1]:
                raise input_error("StyleModelApply", "style_model",
                                  f"{style_model.name} makes {tokens.shape[-1]}-wide tokens but conditioning entry "
                                  f"{k} is {txt.shape[-1]} wide: use a style model of the checkpoint's family")
        _report("style", {"file": style_model.name, "strength": strength, "strength_type": strength_type,
                          "tokens": int(tokens.shape[1])})
        return (apply_style(conditioning, tokens, strength, strength_type),)


class unCLIPConditioning(BuiltinNode):  # noqa: N801  (ComfyUI's node id)
    """Attach a CLIP vision output to the conditioning for unCLIP models (ComfyUI's `unclip_conditioning` list).

    Only unCLIP models (SD2.1 unCLIP, family ``sd21_unclip``) read it: their ADM input gets the noise-augmented
    image embedding (engine.unclip); SD1.x / SD2.x / SDXL models ignore the entry, as ComfyUI's do.

    Parameters:
        conditioning: CONDITIONING to extend.
        clip_vision_output: CLIPVisionEncode's output.
        strength: weight of the image embedding (0 returns the input unchanged).
        noise_augmentation: noise level added to the embedding by the unCLIP model.
    """

    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_adm"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",), "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                             "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def apply_adm(self, conditioning: Conditioning, clip_vision_output: Any, strength: float,
                  noise_augmentation: float) -> tuple[Conditioning]:
        from nodes.conditioning import set_values

        if strength == 0:
            return (conditioning,)
        entry = {"clip_vision_output": clip_vision_output, "strength": strength,
                 "noise_augmentation": noise_augmentation}
        _report("unclip", {"strength": strength, "noise_augmentation": noise_augmentation,
                           "images": int(clip_vision_output["image_embeds"].shape[0])})
        return (set_values(conditioning, {"unclip_conditioning": [entry]}, append=True),)


def _report(kind: str, payload: dict[str, Any]) -> None:
    """Record what this apply node added, for the history entry (``loom.reports``)."""
    ctx = progress_context()
    if ctx is not None:
        ctx.report(kind, payload)


NODES = [CLIPVisionLoader, CLIPVisionEncode, StyleModelLoader, StyleModelApply, unCLIPConditioning]
