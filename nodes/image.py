"""Image nodes: scale, invert, pad for outpainting, batch, crop, empty image, batch slicing (ComfyUI names).

Blend, blur, sharpen, quantize and Canny are in `nodes.image_filters`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.image_ops import common_upscale
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["ImageScale", "ImageScaleBy", "ImageInvert", "ImagePadForOutpaint", "ImageBatch", "ImageCrop", "EmptyImage",
           "ImageScaleToTotalPixels", "RepeatImageBatch", "ImageFromBatch"]

IMAGE_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


class ImageScale(BuiltinNode):
    """Resize images to width x height; a zero side keeps the aspect ratio."""

    DISPLAY_NAME = "Upscale Image"
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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
    def INPUT_TYPES(cls) -> InputTypes:
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


class ImageScaleToTotalPixels(BuiltinNode):
    """Resize keeping the aspect ratio so width * height is about `megapixels` * 1024 * 1024."""

    DISPLAY_NAME = "Scale Image to Total Pixels"
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": (list(IMAGE_UPSCALE_METHODS),),
                "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
            }
        }

    def upscale(self, image: torch.Tensor, upscale_method: str, megapixels: float) -> tuple[torch.Tensor]:
        import math
        if upscale_method not in IMAGE_UPSCALE_METHODS:
            raise input_error("ImageScaleToTotalPixels", "upscale_method",
                              f"{upscale_method!r} is not one of {IMAGE_UPSCALE_METHODS}")
        samples = image.movedim(-1, 1)
        total = int(megapixels * 1024 * 1024)
        scale_by = math.sqrt(total / (samples.shape[3] * samples.shape[2]))
        width = max(1, round(samples.shape[3] * scale_by))
        height = max(1, round(samples.shape[2] * scale_by))
        return (common_upscale(samples, width, height, upscale_method, "disabled").movedim(1, -1),)


class RepeatImageBatch(BuiltinNode):
    """The image batch repeated `amount` times."""

    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",), "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def repeat(self, image: torch.Tensor, amount: int) -> tuple[torch.Tensor]:
        return (image.repeat((amount, *([1] * (image.ndim - 1)))),)


class ImageFromBatch(BuiltinNode):
    """`length` images from `batch_index` (both clamped to the batch)."""

    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": ("IMAGE",),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                "length": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def frombatch(self, image: torch.Tensor, batch_index: int, length: int) -> tuple[torch.Tensor]:
        batch_index = min(image.shape[0] - 1, batch_index)
        length = min(image.shape[0] - batch_index, length)
        return (image[batch_index : batch_index + length].clone(),)


NODES = [ImageScale, ImageScaleBy, ImageInvert, ImagePadForOutpaint, ImageBatch, ImageCrop, EmptyImage,
         ImageScaleToTotalPixels, RepeatImageBatch, ImageFromBatch]
