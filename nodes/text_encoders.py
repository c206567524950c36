"""Text-encoder nodes: prompt encoding (SD1.x / SD2.x, SDXL base and refiner) and clip skip (ComfyUI names).

Nodes that edit an encoded CONDITIONING (combine, area, mask, timestep range, inpaint) are in
`nodes.conditioning`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.types import Conditioning, CondOptions
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    from engine.clip_handle import ClipHandle, Tokens

__all__ = ["CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner", "CLIPSetLastLayer"]



class CLIPTextEncode(BuiltinNode):
    """Encode a prompt (weights `(word:1.2)`, `embedding:name`) with a text encoder."""

    DISPLAY_NAME = "CLIP Text Encode (Prompt)"
    CATEGORY = "conditioning"
    DESCRIPTION = "Encodes a text prompt using a CLIP model into an embedding that guides the diffusion model."
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "The text to be encoded."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            }
        }

    def encode(self, clip: ClipHandle, text: str) -> tuple[Conditioning]:
        if clip is None:
            raise RuntimeError(
                "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your "
                "checkpoint does not contain a valid clip or text encoder model.")
        return (clip.encode_from_tokens_scheduled(clip.tokenize(text)),)


def _encode(clip: ClipHandle, tokens: Tokens, add_dict: CondOptions) -> Conditioning:
    return clip.encode_from_tokens_scheduled(tokens, add_dict=add_dict)


class CLIPTextEncodeSDXL(BuiltinNode):
    """SDXL text encode: separate text for the bigG (`text_g`) and CLIP-L (`text_l`) towers, size conditioning."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        return {
            "required": {
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "crop_w": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
                "crop_h": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
                "target_width": ("INT", dict(size)),
                "target_height": ("INT", dict(size)),
                "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
                "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            }
        }

    def encode(self, clip: ClipHandle, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
               target_height: int, text_g: str, text_l: str) -> tuple[Conditioning]:
        tokens = clip.tokenize(text_g)
        if "g" not in tokens or "l" not in tokens:
            raise input_error("CLIPTextEncodeSDXL", "clip",
                              "this CLIP has no SDXL towers (g and l); use CLIPTextEncode for this model")
        tokens["l"] = clip.tokenize(text_l)["l"]
        if len(tokens["l"]) != len(tokens["g"]):
            empty = clip.tokenize("")
            while len(tokens["l"]) < len(tokens["g"]):
                tokens["l"] += empty["l"]
            while len(tokens["l"]) > len(tokens["g"]):
                tokens["g"] += empty["g"]
        return (_encode(clip, tokens, {"width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h,
                                       "target_width": target_width, "target_height": target_height}),)


class CLIPTextEncodeSDXLRefiner(BuiltinNode):
    """SDXL refiner text encode with an aesthetic score and size."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        return {
            "required": {
                "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
            }
        }

    def encode(self, clip: ClipHandle, ascore: float, width: int, height: int, text: str) -> tuple[Conditioning]:
        return (_encode(clip, clip.tokenize(text), {"aesthetic_score": ascore, "width": width, "height": height}),)


class CLIPSetLastLayer(BuiltinNode):
    """Stop the text encoder at an earlier layer (-2 = "clip skip 2")."""

    DISPLAY_NAME = "CLIP Set Last Layer"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    def set_last_layer(self, clip: ClipHandle, stop_at_clip_layer: int) -> tuple[ClipHandle]:
        clip = clip.clone()
        clip.clip_layer(stop_at_clip_layer)
        return (clip,)


NODES = [CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner, CLIPSetLastLayer]
