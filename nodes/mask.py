"""Mask nodes: invert, solid, mask<->image, grow (ComfyUI `comfy_extras/nodes_mask.py` names)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, input_error
from nodes._ops import grow_mask
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["InvertMask", "SolidMask", "MaskToImage", "ImageToMask", "GrowMask"]

CHANNELS = ["red", "green", "blue", "alpha"]


class InvertMask(BuiltinNode):
    """1 - mask."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - mask,)


class SolidMask(BuiltinNode):
    """A constant mask of the given size."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    def solid(self, value: float, width: int, height: int) -> tuple[torch.Tensor]:
        import torch
        return (torch.full((1, height, width), value, dtype=torch.float32),)


class MaskToImage(BuiltinNode):
    """Grey image from a mask."""

    DISPLAY_NAME = "Convert Mask to Image"
    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        m = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1)
        return (m.expand(-1, -1, -1, 3).clone(),)


class ImageToMask(BuiltinNode):
    """One channel of an image as a mask."""

    DISPLAY_NAME = "Convert Image to Mask"
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "channel": (CHANNELS,)}}

    def image_to_mask(self, image: torch.Tensor, channel: str) -> tuple[torch.Tensor]:
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise input_error("ImageToMask", "channel",
                              f"the image has {image.shape[-1]} channels, so it has no {channel} channel")
        return (image[:, :, :, index],)


class GrowMask(BuiltinNode):
    """Dilate (expand > 0) or erode (expand < 0) a mask by |expand| pixels."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "mask": ("MASK",),
                "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
                "tapered_corners": ("BOOLEAN", {"default": True}),
            }
        }

    def expand_mask(self, mask: torch.Tensor, expand: int, tapered_corners: bool) -> tuple[torch.Tensor]:
        return (grow_mask(mask, expand, tapered_corners),)


NODES = [InvertMask, SolidMask, MaskToImage, ImageToMask, GrowMask]
