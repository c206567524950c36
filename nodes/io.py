"""File nodes: LoadImage, LoadImageMask, LoadLatent (input/), SaveImage, SaveLatent (output/), PreviewImage (temp/)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import string
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from engine.paths import PathError
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    import torch

    from nodes.services import NodeServices


__all__ = ["LoadImage", "LoadImageMask", "LoadImageOutput", "SaveImage", "PreviewImage", "SaveLatent", "LoadLatent"]

MASK_CHANNELS = ["alpha", "red", "green", "blue"]


def _open_image(cls_name: str, services: NodeServices, image: str) -> tuple[str, Image.Image]:
    try:
        path = services.paths.get_annotated_filepath(image)
    except PathError as exc:
        raise input_error(cls_name, "image", str(exc)) from exc
    if not os.path.isfile(path):
        raise input_error(cls_name, "image",
                          f"file {image!r} not found in the input folder ({path}); upload it or pick another")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise input_error(cls_name, "image",
                          f"file {image!r} is not a readable image ({exc}); use PNG, JPEG or WebP") from exc
    return path, img


def _file_sha256(services: NodeServices, image: str) -> str:
    try:
        path = services.paths.get_annotated_filepath(image)
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except (OSError, PathError):
        return f"missing:{image}"


def _frame_mask(frame: Image.Image) -> torch.Tensor:
    import numpy as np
    import torch
    if "A" in frame.getbands():
        alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
        return 1.0 - torch.from_numpy(alpha)
    if frame.mode == "P" and "transparency" in frame.info:
        alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
        return 1.0 - torch.from_numpy(alpha)
    return torch.zeros((64, 64), dtype=torch.float32)


class LoadImage(BuiltinNode):
    """Load an image from input/ as IMAGE plus MASK (1 - alpha; a 64x64 zero mask without alpha)."""

    DISPLAY_NAME = "Load Image"
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.list_input_files(images_only=True)
        return {"required": {"image": (files, {"image_upload": True})}}

    def load_image(self, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np
        import torch
        _, img = _open_image("LoadImage", self._services(), image)
        images: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        size: tuple[int, int] | None = None
        for raw in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(raw) or raw
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            elif rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None])
            masks.append(_frame_mask(frame).unsqueeze(0))
            if img.format == "MPO":
                break
        return torch.cat(images, dim=0), torch.cat(masks, dim=0)

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        return _file_sha256(cls._services(), image)

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        if not cls._services().paths.exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


class LoadImageMask(BuiltinNode):
    """Load one channel of an image from input/ as MASK (alpha inverted: transparent -> 1)."""

    DISPLAY_NAME = "Load Image (as Mask)"
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.list_input_files()
        return {"required": {"image": (files, {"image_upload": True}), "channel": (MASK_CHANNELS,)}}

    def load_image(self, image: str, channel: str) -> tuple[torch.Tensor]:
        import numpy as np
        import torch
        _, img = _open_image("LoadImageMask", self._services(), image)
        frame = ImageOps.exif_transpose(img) or img
        if frame.getbands() != ("R", "G", "B", "A"):
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            frame = frame.convert("RGBA")
        band = channel[0].upper()
        if band in frame.getbands():
            mask = torch.from_numpy(np.array(frame.getchannel(band)).astype(np.float32) / 255.0)
            if band == "A":
                mask = 1.0 - mask
        else:
            mask = torch.zeros((64, 64), dtype=torch.float32)
        return (mask.unsqueeze(0),)

    @classmethod
    def IS_CHANGED(cls, image: str, channel: str = "alpha") -> str:
        return _file_sha256(cls._services(), image)

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        if not cls._services().paths.exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


class SaveImage(BuiltinNode):
    """Save images to output/ as `<prefix>_<counter:05>_.png` with `prompt` / `workflow` chunks."""

    DISPLAY_NAME = "Save Image"
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your output directory."
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    _type = "output"
    _compress_level = 4

    def _output_dir(self) -> str:
        return str(self._services().paths.output_dir)

    def _prefix_append(self) -> str:
        return ""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": (
                    "The prefix for the file to save. This may include formatting information such as "
                    "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.")}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(self, images: torch.Tensor, filename_prefix: str = "ComfyUI", prompt: object = None,
                    extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        from engine.png import save_png

        services = self._services()
        if images.ndim != 4:
            raise input_error(type(self).__name__, "images",
                              f"expected an IMAGE tensor [B,H,W,C], got shape {tuple(images.shape)}")
        target = save_target(type(self).__name__, services, filename_prefix + self._prefix_append(), self._output_dir(),
                             images.shape[2], images.shape[1])
        counter = target.counter
        results = []
        for batch_number, image in enumerate(images):
            name = target.filename.replace("%batch_num%", str(batch_number))
            file = f"{name}_{counter:05}_.png"
            save_png(os.path.join(target.full_output_folder, file), image, prompt=prompt,
                     extra_pnginfo=extra_pnginfo, compress_level=self._compress_level,
                     metadata=not services.disable_metadata)
            results.append({"filename": file, "subfolder": target.subfolder, "type": self._type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    """Save images to temp/ (`ComfyUI_temp_<5 letters>` prefix, compress level 1) for display."""

    DISPLAY_NAME = "Preview Image"
    DESCRIPTION = "Saves the input images to the temp directory for preview."
    _type = "temp"
    _compress_level = 1

    def __init__(self) -> None:
        self._suffix = "_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))

    def _output_dir(self) -> str:
        return str(self._services().paths.temp_dir)

    def _prefix_append(self) -> str:
        return self._suffix

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}


class LoadImageOutput(LoadImage):
    """LoadImage whose picker lists output/ (names arrive annotated, e.g. `"x.png [output]"`)."""

    DISPLAY_NAME = "Load Image (from Outputs)"
    DESCRIPTION = ("Load an image from the output folder. When the refresh button is clicked, the node will update "
                   "the image list and automatically select the first image, allowing for easy iteration.")
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("COMBO", {
            "image_upload": True,
            "image_folder": "output",
            "remote": {"route": "/internal/files/output", "refresh_button": True, "control_after_refresh": "first"},
        })}}


# ComfyUI's latent file keys; files written before the version key held latents scaled by SD1's 0.18215
LATENT_KEY = "latent_tensor"
LATENT_VERSION_KEY = "latent_format_version_0"
LEGACY_LATENT_SCALE = 1.0 / 0.18215


class SaveLatent(BuiltinNode):
    """Save a latent to output/ as `<prefix>_<counter:05>_.latent` (safetensors, ComfyUI's keys and metadata)."""

    CATEGORY = "_for_testing"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, samples: Latent, filename_prefix: str = "ComfyUI", prompt: object = None,
             extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        import torch
        from safetensors.torch import save_file

        services = self._services()
        if not isinstance(samples, dict) or not isinstance(samples.get("samples"), torch.Tensor):
            raise input_error("SaveLatent", "samples",
                              f"expected a LATENT dict with a 'samples' tensor, got {type(samples).__name__}")
        target = save_target("SaveLatent", services, filename_prefix)
        metadata: dict[str, str] | None = None
        if not services.disable_metadata:
            metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
            for key, value in (extra_pnginfo or {}).items():
                metadata[key] = json.dumps(value)
        file = f"{target.filename}_{target.counter:05}_.latent"
        tensors = {LATENT_KEY: samples["samples"].detach().cpu().contiguous(), LATENT_VERSION_KEY: torch.tensor([])}
        save_file(tensors, os.path.join(target.full_output_folder, file), metadata=metadata)
        return {"ui": {"latents": [{"filename": file, "subfolder": target.subfolder, "type": "output"}]}}


class LoadLatent(BuiltinNode):
    """Load a `.latent` file from input/ (files without the version key are rescaled by 1 / 0.18215)."""

    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = [f for f in cls._services().paths.list_input_files() if f.endswith(".latent")]
        return {"required": {"latent": (files,)}}

    def load(self, latent: str) -> tuple[Latent]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            path = self._services().paths.get_annotated_filepath(latent)
        except PathError as exc:
            raise input_error("LoadLatent", "latent", str(exc)) from exc
        if not os.path.isfile(path):
            raise input_error("LoadLatent", "latent",
                              f"file {latent!r} not found in the input folder ({path}); copy it there or pick another")
        try:
            tensors = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise input_error("LoadLatent", "latent", f"file {latent!r} is not a safetensors latent ({exc})") from exc
        if LATENT_KEY not in tensors:
            raise input_error("LoadLatent", "latent",
                              f"file {latent!r} has no {LATENT_KEY!r} tensor (keys: {sorted(tensors)[:5]})")
        multiplier = 1.0 if LATENT_VERSION_KEY in tensors else LEGACY_LATENT_SCALE
        return ({"samples": tensors[LATENT_KEY].float() * multiplier},)

    @classmethod
    def IS_CHANGED(cls, latent: str) -> str:
        return _file_sha256(cls._services(), latent)

    @classmethod
    def VALIDATE_INPUTS(cls, latent: str) -> bool | str:
        if not cls._services().paths.exists_annotated_filepath(latent):
            return f"Invalid latent file: {latent}"
        return True


NODES = [LoadImage, LoadImageMask, LoadImageOutput, SaveImage, PreviewImage, SaveLatent, LoadLatent]
