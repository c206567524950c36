"""SaveAnimatedWEBP / SaveAnimatedPNG: a batch written as one animated file in output/ (ComfyUI's `ui` payload)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engine import animated
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    import torch

__all__ = ["SaveAnimatedWEBP", "SaveAnimatedPNG"]

_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


class _SaveAnimated(BuiltinNode):
    CATEGORY = "image/animation"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    _extension = ""

    def _target(self, images: Any, filename_prefix: str) -> tuple[str, dict[str, str]]:
        """The file path to write and its `{filename, subfolder, type}` entry."""
        name = type(self).__name__
        if getattr(images, "ndim", None) != 4 or images.shape[0] == 0:
            raise input_error(name, "images", "expected a non-empty IMAGE batch [B,H,W,C], got "
                              f"{getattr(images, 'shape', type(images).__name__)}")
        services = self._services()
        target = save_target(name, services, filename_prefix, width=images.shape[2], height=images.shape[1])
        file = f"{target.filename}_{target.counter:05}_.{self._extension}"
        entry = {"filename": file, "subfolder": target.subfolder, "type": "output"}
        return os.path.join(target.full_output_folder, file), entry

    @staticmethod
    def _ui(entry: dict[str, str], frames: int) -> dict[str, Any]:
        ui: dict[str, Any] = {"images": [entry]}
        if frames > 1:
            ui["animated"] = (True,)
        return {"ui": ui}


class SaveAnimatedWEBP(_SaveAnimated):
    """Save the batch as one animated WebP (lossless or at `quality`), prompt and workflow in EXIF."""

    _extension = "webp"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (list(animated.WEBP_METHODS),),
            },
            "hidden": dict(_HIDDEN),
        }

    def save_images(self, images: torch.Tensor, fps: float, filename_prefix: str, lossless: bool, quality: int,
                    method: str, num_frames: int = 0, prompt: Any = None,
                    extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        if method not in animated.WEBP_METHODS:
            raise input_error("SaveAnimatedWEBP", "method", f"{method!r} is not one of {list(animated.WEBP_METHODS)}")
        path, entry = self._target(images, filename_prefix)
        animated.save_animated_webp(path, list(images), fps, lossless, quality, animated.WEBP_METHODS[method],
                                    prompt=prompt, extra_pnginfo=extra_pnginfo,
                                    metadata=not self._services().disable_metadata)
        return self._ui(entry, images.shape[0])


class SaveAnimatedPNG(_SaveAnimated):
    """Save the batch as one animated PNG (APNG), prompt and workflow in `comf` chunks."""

    _extension = "png"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "compress_level": ("INT", {"default": 4, "min": 0, "max": 9}),
            },
            "hidden": dict(_HIDDEN),
        }

    def save_images(self, images: torch.Tensor, fps: float, compress_level: int, filename_prefix: str = "ComfyUI",
                    prompt: Any = None, extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        path, entry = self._target(images, filename_prefix)
        animated.save_animated_png(path, list(images), fps, compress_level, prompt=prompt,
                                   extra_pnginfo=extra_pnginfo, metadata=not self._services().disable_metadata)
        return self._ui(entry, images.shape[0])


NODES = [SaveAnimatedWEBP, SaveAnimatedPNG]
