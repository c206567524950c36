"""Image filters: blend modes, Gaussian blur, sharpen, palette quantize, Canny edges (ComfyUI names and inputs)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from engine.image_ops import bayer_offsets, canny_edges, common_upscale, filter2d_reflect, post_kernel
from nodes._base import BuiltinNode, InputTypes, input_error

if TYPE_CHECKING:
    import torch


__all__ = ["ImageBlend", "ImageBlur", "ImageSharpen", "ImageQuantize", "Canny"]

_BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


class ImageBlend(BuiltinNode):
    """image1 mixed with `blend_mode`(image1, image2) by `blend_factor` (image2 resized to image1 if needed)."""

    DISPLAY_NAME = "Image Blend"
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
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


def _check_radius(class_name: str, input_name: str, image: torch.Tensor, radius: int) -> None:
    if image.ndim != 4:
        raise input_error(class_name, "image", f"expected an IMAGE tensor [B,H,W,C], got shape {tuple(image.shape)}")
    if radius >= min(image.shape[1], image.shape[2]):
        raise input_error(class_name, input_name,
                          f"{radius} needs an image larger than {radius} px on each side (reflect padding), "
                          f"got {image.shape[2]}x{image.shape[1]}; lower {input_name}")


class ImageBlur(BuiltinNode):
    """Gaussian blur, kernel `2 * blur_radius + 1` wide with reflect padding (sigma relative to the radius)."""

    DISPLAY_NAME = "Image Blur"
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": ("IMAGE",),
                "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            }
        }

    def blur(self, image: torch.Tensor, blur_radius: int, sigma: float) -> tuple[torch.Tensor]:
        if blur_radius == 0:
            return (image,)
        _check_radius("ImageBlur", "blur_radius", image, blur_radius)
        kernel = post_kernel(2 * blur_radius + 1, sigma)
        return (filter2d_reflect(image.movedim(-1, 1), kernel).movedim(1, -1),)


class ImageSharpen(BuiltinNode):
    """Unsharp-style sharpening: centre tap minus `alpha * 10` times a Gaussian, kernel summing to 1, clamped."""

    DISPLAY_NAME = "Image Sharpen"
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": ("IMAGE",),
                "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}),
            }
        }

    def sharpen(self, image: torch.Tensor, sharpen_radius: int, sigma: float, alpha: float) -> tuple[torch.Tensor]:
        import torch
        if sharpen_radius == 0:
            return (image,)
        _check_radius("ImageSharpen", "sharpen_radius", image, sharpen_radius)
        kernel = post_kernel(2 * sharpen_radius + 1, sigma) * -(alpha * 10)
        kernel[sharpen_radius, sharpen_radius] += 1.0 - kernel.sum()
        out = filter2d_reflect(image.movedim(-1, 1), kernel).movedim(1, -1)
        return (torch.clamp(out, 0, 1),)


_DITHERS = ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]


class ImageQuantize(BuiltinNode):
    """Reduce each image to `colors` palette colours (PIL median cut), optionally dithered."""

    DISPLAY_NAME = "Image Quantize"
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "quantize"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image": ("IMAGE",),
                "colors": ("INT", {"default": 256, "min": 1, "max": 256, "step": 1}),
                "dither": (list(_DITHERS),),
            }
        }

    def quantize(self, image: torch.Tensor, colors: int = 256, dither: str = "none") -> tuple[torch.Tensor]:
        import numpy as np
        import torch
        if dither not in _DITHERS:
            raise input_error("ImageQuantize", "dither", f"{dither!r} is not one of {_DITHERS}")
        if image.ndim != 4 or image.shape[-1] != 3:
            raise input_error("ImageQuantize", "image",
                              f"expected an RGB IMAGE [B,H,W,3], got shape {tuple(image.shape)}")
        result = torch.zeros_like(image)
        for b in range(image.shape[0]):
            # ComfyUI truncates to uint8 here (no rounding)
            arr = (image[b].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
            pil = Image.fromarray(arr, mode="RGB")
            palette = pil.quantize(colors=colors)  # the palette must come from a quantize of the same image
            if dither.startswith("bayer"):
                order = int(dither.split("-")[1])
                spread = 2 * 256 / (len(palette.getpalette() or []) // 3)
                offsets = spread * bayer_offsets(order) + 0.5
                h, w = arr.shape[:2]
                tiled = offsets.repeat(-(-h // order), -(-w // order))[:h, :w, None]
                shifted = (torch.from_numpy(arr.astype(np.float64)) + tiled).clamp(0, 255).to(torch.uint8)
                pil = Image.fromarray(shifted.numpy(), mode="RGB")
                quantized = pil.quantize(palette=palette, dither=Image.Dither.NONE)
            else:
                mode = Image.Dither.FLOYDSTEINBERG if dither == "floyd-steinberg" else Image.Dither.NONE
                quantized = pil.quantize(palette=palette, dither=mode)
            rgb = np.array(quantized.convert("RGB")).astype(np.float32) / 255.0
            result[b] = torch.from_numpy(rgb).to(result)
        return (result,)


class Canny(BuiltinNode):
    """Canny edge map of each image as a 3-channel 0/1 IMAGE (thresholds on the Sobel magnitude of 0..1 luma)."""

    CATEGORY = "image/preprocessors"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect_edge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        threshold = {"min": 0.01, "max": 0.99, "step": 0.01}
        return {
            "required": {
                "image": ("IMAGE",),
                "low_threshold": ("FLOAT", {"default": 0.4, **threshold}),
                "high_threshold": ("FLOAT", {"default": 0.8, **threshold}),
            }
        }

    def detect_edge(self, image: torch.Tensor, low_threshold: float, high_threshold: float) -> tuple[torch.Tensor]:
        if image.ndim != 4:
            raise input_error("Canny", "image", f"expected an IMAGE tensor [B,H,W,C], got shape {tuple(image.shape)}")
        if low_threshold > high_threshold:
            raise input_error("Canny", "low_threshold",
                              f"{low_threshold} is above high_threshold {high_threshold}; swap them")
        if min(image.shape[1], image.shape[2]) < 3:
            raise input_error("Canny", "image", f"needs at least 3x3 pixels, got {image.shape[2]}x{image.shape[1]}")
        edges = canny_edges(image.movedim(-1, 1), low_threshold, high_threshold)
        return (edges.repeat(1, 3, 1, 1).movedim(1, -1),)


NODES = [ImageBlend, ImageBlur, ImageSharpen, ImageQuantize, Canny]
