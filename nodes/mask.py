"""Mask nodes: invert, solid, mask<->image, grow (ComfyUI `comfy_extras/nodes_mask.py` names)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.image_ops import grow_mask, paste
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["InvertMask", "SolidMask", "MaskToImage", "ImageToMask", "GrowMask", "ImageCompositeMasked", "ThresholdMask",
           "CropMask", "MaskComposite", "FeatherMask"]

CHANNELS = ["red", "green", "blue", "alpha"]


class InvertMask(BuiltinNode):
    """1 - mask."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - mask,)


class SolidMask(BuiltinNode):
    """A constant mask of the given size."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "mask": ("MASK",),
                "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
                "tapered_corners": ("BOOLEAN", {"default": True}),
            }
        }

    def expand_mask(self, mask: torch.Tensor, expand: int, tapered_corners: bool) -> tuple[torch.Tensor]:
        return (grow_mask(mask, expand, tapered_corners),)


class ImageCompositeMasked(BuiltinNode):
    """Paste `source` onto `destination` at (x, y), through `mask` when given (1 = source, 0 = destination).

    The usual last step of an inpaint graph: pixels outside the mask come back exactly as they were, instead
    of as the VAE's reconstruction of them. Batches repeat to the destination's size; the mask is resized
    to the source; parts falling outside the destination are cut off.
    """

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "destination": ("IMAGE",),
                "source": ("IMAGE",),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "resize_source": ("BOOLEAN", {"default": False}),
            },
            "optional": {"mask": ("MASK",)},
        }

    def composite(self, destination: torch.Tensor, source: torch.Tensor, x: int, y: int, resize_source: bool,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        if source.shape[-1] != destination.shape[-1]:
            raise input_error("ImageCompositeMasked", "source",
                              f"source has {source.shape[-1]} channels but destination has {destination.shape[-1]}")
        out = paste(destination.movedim(-1, 1), source.movedim(-1, 1), x, y, mask, resize_source)
        return (out.movedim(1, -1),)


def _as_batch(mask: torch.Tensor) -> torch.Tensor:
    """A MASK as [B, H, W] (a single [H, W] mask gets a batch of one)."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1])


class ThresholdMask(BuiltinNode):
    """1 where the mask is above `value`, else 0."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"mask": ("MASK",),
                             "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def image_to_mask(self, mask: torch.Tensor, value: float) -> tuple[torch.Tensor]:
        return ((mask > value).to(mask.dtype),)


class CropMask(BuiltinNode):
    """The `width` x `height` window of the mask whose top-left corner is (x, y), cut at the mask's edges."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        size = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"mask": ("MASK",), "x": ("INT", dict(pos)), "y": ("INT", dict(pos)),
                             "width": ("INT", dict(size)), "height": ("INT", dict(size))}}

    def crop(self, mask: torch.Tensor, x: int, y: int, width: int, height: int) -> tuple[torch.Tensor]:
        m = _as_batch(mask)
        if x >= m.shape[-1] or y >= m.shape[-2]:
            raise input_error("CropMask", "x" if x >= m.shape[-1] else "y",
                              f"({x}, {y}) is outside the {m.shape[-1]}x{m.shape[-2]} mask")
        return (m[:, y: y + height, x: x + width],)


_MASK_OPS = ["multiply", "add", "subtract", "and", "or", "xor"]


class MaskComposite(BuiltinNode):
    """Combine `source` into `destination` at (x, y) with an operation; the result is clamped to 0..1."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"destination": ("MASK",), "source": ("MASK",), "x": ("INT", dict(pos)),
                             "y": ("INT", dict(pos)), "operation": (list(_MASK_OPS),)}}

    def combine(self, destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
                operation: str) -> tuple[torch.Tensor]:
        import torch

        if operation not in _MASK_OPS:
            raise input_error("MaskComposite", "operation", f"{operation!r} is not one of {', '.join(_MASK_OPS)}")
        out = _as_batch(destination).clone()
        src = _as_batch(source).to(out)
        h = max(0, min(src.shape[-2], out.shape[-2] - y))
        w = max(0, min(src.shape[-1], out.shape[-1] - x))
        if h and w:
            region = out[:, y: y + h, x: x + w]
            part = src[:, :h, :w]
            if operation == "multiply":
                new = region * part
            elif operation == "add":
                new = region + part
            elif operation == "subtract":
                new = region - part
            else:
                a, b = torch.round(region).bool(), torch.round(part).bool()
                logic = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation]
                new = logic(a, b).to(out.dtype)
            out[:, y: y + h, x: x + w] = new
        return (out.clamp(0.0, 1.0),)


class FeatherMask(BuiltinNode):
    """Fade the mask linearly to 0 over `left` / `top` / `right` / `bottom` pixels from each edge."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "feather"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"mask": ("MASK",), **{side: ("INT", dict(pos)) for side in
                                                    ("left", "top", "right", "bottom")}}}

    def feather(self, mask: torch.Tensor, left: int, top: int, right: int, bottom: int) -> tuple[torch.Tensor]:
        import torch

        out = _as_batch(mask).clone()
        h, w = out.shape[-2], out.shape[-1]
        left, right, top, bottom = min(left, w), min(right, w), min(top, h), min(bottom, h)
        cols = torch.ones(w, dtype=out.dtype)
        rows = torch.ones(h, dtype=out.dtype)
        for i in range(left):
            cols[i] *= (i + 1) / left
        for i in range(right):
            cols[w - 1 - i] *= (i + 1) / right
        for i in range(top):
            rows[i] *= (i + 1) / top
        for i in range(bottom):
            rows[h - 1 - i] *= (i + 1) / bottom
        return (out * rows.to(out.device)[:, None] * cols.to(out.device)[None, :],)


NODES = [InvertMask, SolidMask, MaskToImage, ImageToMask, GrowMask, ImageCompositeMasked, ThresholdMask, CropMask,
         MaskComposite, FeatherMask]
