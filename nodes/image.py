"""Image nodes: scale, invert, pad for outpainting, batch, crop (ComfyUI names and inputs)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, input_error
from nodes._ops import common_upscale
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["ImageScale", "ImageScaleBy", "ImageInvert", "ImagePadForOutpaint", "ImageBatch", "ImageCrop"]

IMAGE_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


class ImageScale(BuiltinNode):
    """Resize images to width x height; a zero side keeps the aspect ratio."""

    DISPLAY_NAME = "Upscale Image"
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (IMAGE_UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "crop": (CROP_METHODS,),
            }
        }

    def upscale(self, image: torch.Tensor, upscale_method: str, width: int, height: int,
                crop: str) -> tuple[torch.Tensor]:
        if width == 0 and height == 0:
            return (image,)
        samples = image.movedim(-1, 1)
        if width == 0:
            width = max(1, round(samples.shape[3] * height / samples.shape[2]))
        elif height == 0:
            height = max(1, round(samples.shape[2] * width / samples.shape[3]))
        return (common_upscale(samples, width, height, upscale_method, crop).movedim(1, -1),)


class ImageScaleBy(BuiltinNode):
    """Resize images by a factor."""

    DISPLAY_NAME = "Upscale Image By"
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (IMAGE_UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    def upscale(self, image: torch.Tensor, upscale_method: str, scale_by: float) -> tuple[torch.Tensor]:
        samples = image.movedim(-1, 1)
        width = round(samples.shape[3] * scale_by)
        height = round(samples.shape[2] * scale_by)
        return (common_upscale(samples, width, height, upscale_method, "disabled").movedim(1, -1),)


class ImageInvert(BuiltinNode):
    """1 - image."""

    DISPLAY_NAME = "Invert Image"
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - image,)


class ImagePadForOutpaint(BuiltinNode):
    """Pad with grey and return a mask of the new area, feathered into the original image."""

    DISPLAY_NAME = "Pad Image for Outpainting"
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "image": ("IMAGE",),
                "left": ("INT", dict(side)),
                "top": ("INT", dict(side)),
                "right": ("INT", dict(side)),
                "bottom": ("INT", dict(side)),
                "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    def expand_image(self, image: torch.Tensor, left: int, top: int, right: int, bottom: int,
                     feathering: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        b, h, w, c = image.shape
        new_image = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
        new_image[:, top : top + h, left : left + w, :] = image
        mask = torch.ones((h + top + bottom, w + left + right), dtype=torch.float32)
        inner = torch.zeros((h, w), dtype=torch.float32)
        if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
            i = torch.arange(h, dtype=torch.float32).unsqueeze(1).expand(h, w)
            j = torch.arange(w, dtype=torch.float32).unsqueeze(0).expand(h, w)
            dt = i if top != 0 else torch.full_like(i, h)
            db = (h - i) if bottom != 0 else torch.full_like(i, h)
            dl = j if left != 0 else torch.full_like(j, w)
            dr = (w - j) if right != 0 else torch.full_like(j, w)
            d = torch.minimum(torch.minimum(dt, db), torch.minimum(dl, dr))
            v = (feathering - d) / feathering
            inner = torch.where(d < feathering, v * v, inner)
        mask[top : top + h, left : left + w] = inner
        return (new_image, mask.unsqueeze(0))


class ImageBatch(BuiltinNode):
    """Concatenate two image batches; image2 is resized (bilinear, center crop) to image1's size."""

    DISPLAY_NAME = "Batch Images"
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor]:
        import torch
        if image1.shape[-1] != image2.shape[-1]:
            raise input_error(
                "ImageBatch", "image2",
                f"has {image2.shape[-1]} channels but image1 has {image1.shape[-1]}; convert one of them first",
            )
        if image1.shape[1:3] != image2.shape[1:3]:
            image2 = common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bilinear",
                                    "center").movedim(1, -1)
        return (torch.cat((image1, image2), dim=0),)


class ImageCrop(BuiltinNode):
    """Crop a width x height window at (x, y)."""

    DISPLAY_NAME = "Image Crop"
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            }
        }

    def crop(self, image: torch.Tensor, width: int, height: int, x: int, y: int) -> tuple[torch.Tensor]:
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y : y + height, x : x + width, :],)


class EmptyImage(BuiltinNode):
    """A batch of images of one colour (`color` as 0xRRGGBB)."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
            }
        }

    def generate(self, width: int, height: int, batch_size: int = 1, color: int = 0) -> tuple[torch.Tensor]:
        import torch

        rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 255.0
        return (rgb.expand(batch_size, height, width, 3).clone(),)


_BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


class ImageBlend(BuiltinNode):
    """image1 mixed with `blend_mode`(image1, image2) by `blend_factor` (image2 resized to image1 if needed)."""

    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image1": ("IMAGE",),
                "image2": ("IMAGE",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                "blend_mode": (list(_BLEND_MODES),),
            }
        }

    def blend_images(self, image1: torch.Tensor, image2: torch.Tensor, blend_factor: float,
                     blend_mode: str) -> tuple[torch.Tensor]:
        import torch

        if blend_mode not in _BLEND_MODES:
            raise input_error("ImageBlend", "blend_mode", f"{blend_mode!r} is not one of {', '.join(_BLEND_MODES)}")
        if image1.shape[-1] != image2.shape[-1]:
            raise input_error("ImageBlend", "image2",
                              f"has {image2.shape[-1]} channels but image1 has {image1.shape[-1]}")
        image2 = image2.to(image1)
        if image1.shape[1:3] != image2.shape[1:3]:
            image2 = common_upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bicubic",
                                    "center").movedim(1, -1)
        a, b = image1, image2
        if blend_mode == "normal":
            mixed = b
        elif blend_mode == "multiply":
            mixed = a * b
        elif blend_mode == "screen":
            mixed = 1 - (1 - a) * (1 - b)
        elif blend_mode == "overlay":
            mixed = torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
        elif blend_mode == "soft_light":
            g = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
            mixed = torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
        else:
            mixed = a - b
        out = a * (1 - blend_factor) + mixed * blend_factor
        return (torch.clamp(out, 0, 1),)


NODES = [ImageScale, ImageScaleBy, ImageInvert, ImagePadForOutpaint, ImageBatch, ImageCrop, EmptyImage, ImageBlend]
