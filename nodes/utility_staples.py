"""Small model-free nodes of current ComfyUI that its workflow templates use (names, inputs and results follow
comfy_extras nodes_text ``SaveText``, nodes_logic ``CustomCombo``, nodes_seed ``SeedNode``, nodes_number_convert
``ComfyNumberConvert``, nodes_color ``ColorToRGBInt`` and nodes_latent ``LatentCutToBatch``):

* ``SaveText``: a string to output/ as ``<prefix>_<counter:05>.<txt|md|json>`` (JSON pretty-printed when it
  parses); passes the text on and shows it (``ui.text``, ``ui.files``).
* ``CustomCombo``: the editor writes the options; the node returns the chosen string and its index (the
  choice is not checked against the declared, empty, option list; other editor inputs are accepted).
* ``SeedNode``: an INT seed widget, passed through.
* ``ComfyNumberConvert``: INT / FLOAT / STRING / BOOLEAN -> FLOAT and INT.
* ``ColorToRGBInt``: ``#RRGGBB`` or ``#RRGGBBAA`` -> ``0xRRGGBB`` as an int, the ``#RRGGBB`` colour and alpha 0..1.
* ``LatentCutToBatch``: cut a latent along t, x or y into ``slice_size`` pieces stacked on the batch axis.
* ``Painter`` (nodes_painter): the editor's painting (an RGBA file in input/) over an image or a colour; its
  alpha is the mask.
* ``FluxKontextImageScale`` (nodes_flux): an image resized (Lanczos, centre crop) to the Kontext training
  resolution nearest its aspect ratio; model-free, used before edit-model encoders.
* ``ImageCropToMask`` (nodes_images): each image cropped to its mask's subject over a background colour and
  resized (Lanczos) to width x height (``engine.mask_crop``).
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from engine.paths import PathError
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, latent_samples, save_target
from nodes.io import PreviewImage
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch

__all__ = ["SaveText", "CustomCombo", "SeedNode", "ComfyNumberConvert", "ColorToRGBInt", "LatentCutToBatch",
           "ImageCropToMask", "Painter", "FluxKontextImageScale"]

TEXT_FORMATS = ["txt", "md", "json"]


class SaveText(BuiltinNode):
    """Save text to output/ as .txt, .md or .json (pretty-printed when the text is JSON)."""

    DISPLAY_NAME = "Save Text"
    CATEGORY = "text"
    DESCRIPTION = "Save text content to a file in the output directory."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"text": ("STRING", {"forceInput": True}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "format": (TEXT_FORMATS, {"default": "txt"})}}

    def execute(self, text: str, filename_prefix: str, format: str) -> dict[str, Any]:
        if not isinstance(text, str):
            raise input_error("SaveText", "text", f"expected a STRING, got {type(text).__name__}")
        if format not in TEXT_FORMATS:
            raise input_error("SaveText", "format", f"{format!r} is not one of {TEXT_FORMATS}")
        services = self._services()
        target = save_target("SaveText", services, filename_prefix, width=1, height=1)
        file = f"{target.filename}_{target.counter:05}.{format}"
        content = text
        if format == "json":
            try:
                content = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except json.JSONDecodeError:
                pass  # not JSON: written as given
        with open(os.path.join(target.full_output_folder, file), "w", encoding="utf-8") as fh:
            fh.write(content)
        entry = {"filename": file, "subfolder": target.subfolder, "type": "output"}
        return {"ui": {"text": (text,), "files": [entry]}, "result": (text,)}


class _AnyName(dict[str, Any]):
    """An input section that accepts every name (ComfyUI's ``accept_all_inputs``): the editor adds its own."""

    def __contains__(self, name: object) -> bool:
        return True


class CustomCombo(BuiltinNode):
    """A dropdown whose options the editor defines; returns the chosen string and its index."""

    DISPLAY_NAME = "Custom Combo"
    CATEGORY = "utils"
    DESCRIPTION = ("Provides a user-defined dropdown combo box where options are written by the user, outputting "
                   "the selected string and its index.")
    EXPERIMENTAL = True
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("STRING", "INDEX")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"choice": ([], {})}, "optional": _AnyName()}

    @classmethod
    def VALIDATE_INPUTS(cls, choice: str, index: int = 0, **kwargs: Any) -> bool:
        return True  # the options live in the editor, not in this declaration

    def execute(self, choice: str, index: int = 0, **kwargs: Any) -> tuple[str, int]:
        return (choice, index)


class SeedNode(BuiltinNode):
    """A seed widget (randomised by the editor after each queue when set to), passed through as INT."""

    DISPLAY_NAME = "Seed"
    CATEGORY = "utilities"
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("seed",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"seed": ("INT", {"min": 0, "max": sys.maxsize, "control_after_generate": "fixed",
                                              "component": "SetRandomInt"})}}

    def execute(self, seed: int) -> tuple[int]:
        return (seed,)


def to_numbers(value: Any) -> tuple[float, int]:
    """ComfyNumberConvert's rule: booleans as 0/1, ints and floats cast (int() truncates), strings parsed (an
    integer string keeps its exact int); empty, unparsable and non-finite values are refused."""
    if isinstance(value, bool):
        return float(value), int(value)
    if isinstance(value, int):
        return float(value), value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Cannot convert non-finite value to number: {value}")
        return value, int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("Cannot convert empty string to number.")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"Cannot convert string to number: {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"Cannot convert non-finite value to number: {number}")
        try:
            return number, int(text)
        except ValueError:
            return number, int(number)
    raise ValueError(f"Unsupported input type: {type(value).__name__}")


class ComfyNumberConvert(BuiltinNode):
    """Convert an INT, FLOAT, STRING or BOOLEAN to FLOAT and INT."""

    DISPLAY_NAME = "Number Convert"
    CATEGORY = "math"
    RETURN_TYPES = ("FLOAT", "INT")
    RETURN_NAMES = ("FLOAT", "INT")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("INT,FLOAT,STRING,BOOLEAN", {"display_name": "value"})}}

    def execute(self, value: Any) -> tuple[float, int]:
        try:
            return to_numbers(value)
        except ValueError as exc:
            raise input_error("ComfyNumberConvert", "value", str(exc)) from exc


def parse_color(color: str) -> tuple[int, str, float]:
    """``#RRGGBB`` / ``#RRGGBBAA`` -> (0xRRGGBB, ``#RRGGBB``, alpha 0..1)."""
    if not isinstance(color, str) or len(color) not in (7, 9) or not color.startswith("#"):
        raise ValueError(f"Color must be in format #RRGGBB or #RRGGBBAA, got {color!r}")
    try:
        value = int(color[1:], 16)
    except ValueError:
        raise ValueError(f"Color must be in format #RRGGBB or #RRGGBBAA, got {color!r}") from None
    if len(color) == 9:
        return value >> 8, color[:7], (value & 0xFF) / 255.0
    return value, color, 1.0


class ColorToRGBInt(BuiltinNode):
    """A colour as one RGB integer, its ``#RRGGBB`` hex and its alpha."""

    DISPLAY_NAME = "Color Picker"
    CATEGORY = "utilities"
    DESCRIPTION = "Return a color RGB integer value and hexadecimal representation."
    RETURN_TYPES = ("INT", "COLOR", "FLOAT")
    RETURN_NAMES = ("rgb_int", "hex", "alpha")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"color": ("COLOR", {})}}

    def execute(self, color: str) -> tuple[int, str, float]:
        try:
            return parse_color(color)
        except ValueError as exc:
            raise input_error("ColorToRGBInt", "color", str(exc)) from exc


class LatentCutToBatch(BuiltinNode):
    """Cut a latent along t, x or y into equal slices stacked on the batch axis (a remainder is dropped)."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "dim": (["t", "x", "y"],),
                             "slice_size": ("INT", {"default": 1, "min": 1, "max": MAX_RESOLUTION, "step": 1})}}

    def execute(self, samples: Latent, dim: str, slice_size: int) -> tuple[Latent]:
        s = latent_samples(samples, "LatentCutToBatch", "samples")
        axis = s.ndim - {"x": 1, "y": 2, "t": 3}[dim]
        if axis < 2:  # no such axis past batch and channels (t on a 4-D image latent)
            return (samples,)
        moved = s.movedim(axis, 1)
        size = min(slice_size, moved.shape[1])
        moved = moved[:, :moved.shape[1] // size * size]
        out: Latent = {**samples}
        out["samples"] = moved.reshape([-1, size, *moved.shape[2:]]).movedim(1, axis)
        return (out,)


class ImageCropToMask(BuiltinNode):
    """Crop each image to its mask's subject (centred, padded), composite over a colour and resize."""

    DISPLAY_NAME = "Crop Image to Mask"
    CATEGORY = "image/transform"
    DESCRIPTION = ("Crop an image to its mask's bounding box (centered, with pad_factor margin), then composite "
                   "`img * mask` over the background and resize; out-of-bounds crops are zero-padded.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "images": ("IMAGE",),
            "masks": ("MASK",),
            "width": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 8, "tooltip": "Output width in pixels."}),
            "height": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 8,
                               "tooltip": "Output height in pixels."}),
            "pad_factor": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.01,
                                     "tooltip": "Extra margin around the mask bounding box as a multiplier."}),
            "grow_mask": ("INT", {"default": 0, "min": -32, "max": 32, "step": 1,
                                  "tooltip": "Grow or shrink the mask by this many pixels before cropping."}),
            "background": ("COLOR", {"default": "#000000",
                                     "tooltip": "Background color behind the masked subject."}),
        }}

    def execute(self, images: torch.Tensor, masks: torch.Tensor, width: int, height: int, pad_factor: float,
                grow_mask: int, background: str) -> tuple[torch.Tensor]:
        import torch

        from engine import image_ops, mask_crop

        images = images[..., :3]
        batch = images.shape[0]
        if masks.ndim == 2:
            masks = masks.unsqueeze(0)
        if masks.shape[0] == 1 and batch > 1:
            masks = masks.expand(batch, -1, -1)
        elif masks.shape[0] != batch:
            raise input_error("ImageCropToMask", "masks",
                              f"{masks.shape[0]} masks for {batch} images; give one mask or one per image")
        if masks.shape[-2:] != images.shape[1:3]:
            masks = image_ops.common_upscale(masks.unsqueeze(1).float(), images.shape[2], images.shape[1],
                                             "bilinear", "disabled").squeeze(1)
        color = mask_crop.parse_hex_color(background)
        out = []
        for image, mask in zip(images, masks, strict=True):
            crop = mask_crop.crop_to_mask(image, mask, max(width, height), pad_factor, grow_mask, color,
                                          width / height)
            out.append(image_ops.common_upscale(crop, width, height, "lanczos", "disabled").movedim(-3, -1))
        return (torch.cat(out, dim=0),)


class Painter(PreviewImage):
    """The editor's painting (``mask``: an RGBA file in input/) composited over ``image`` or a ``bg_color``
    canvas of width x height; returns the picture and the painting's alpha as MASK, and previews the picture."""

    DISPLAY_NAME = "Painter"
    CATEGORY = "image"
    DESCRIPTION = ""
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("IMAGE", "MASK")
    FUNCTION = "paint"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        size = {"min": 64, "max": 4096, "step": 64, "socketless": True, "hidden": True}
        return {
            "required": {
                "mask": ("STRING", {"default": "", "socketless": True, "widgetType": "PAINTER", "image_upload": True}),
                "width": ("INT", {"default": 512, **size}),
                "height": ("INT", {"default": 512, **size}),
                "bg_color": ("COLOR", {"default": "#000000"}),
            },
            "optional": {"image": ("IMAGE", {"tooltip": "Optional base image to paint over"})},
        }

    def paint(self, mask: str, width: int, height: int, bg_color: str = "#000000",
              image: torch.Tensor | None = None) -> dict[str, Any]:
        import numpy as np
        import torch
        from PIL import Image, UnidentifiedImageError

        from engine.mask_crop import parse_hex_color

        if image is not None:
            base = image[:1, ..., :3].float()
        else:
            base = torch.tensor(parse_hex_color(bg_color), dtype=torch.float32).expand(1, height, width, 3).clone()
        h, w = int(base.shape[1]), int(base.shape[2])
        if mask and mask.strip():
            try:
                path = self._services().paths.get_annotated_filepath(mask)
                with Image.open(path) as opened:
                    painting = opened.convert("RGBA")
            except (PathError, OSError, UnidentifiedImageError) as exc:
                raise input_error("Painter", "mask", f"cannot read the painting {mask!r}: {exc}") from exc
            if painting.size != (w, h):
                painting = painting.resize((w, h), Image.Resampling.LANCZOS)
            rgba = torch.from_numpy(np.asarray(painting).astype(np.float32) / 255.0)
            alpha = rgba[..., 3:]
            picture = (rgba[..., :3] * alpha + base[0] * (1.0 - alpha)).unsqueeze(0)
            out_mask = alpha[..., 0].unsqueeze(0)
        else:
            picture, out_mask = base, torch.zeros((1, h, w), dtype=torch.float32)
        preview = self.save_images(picture)["ui"]
        return {"ui": preview, "result": (picture, out_mask)}

    @classmethod
    def IS_CHANGED(cls, mask: str, **kwargs: Any) -> str:
        import hashlib

        if not mask or not mask.strip():
            return ""
        try:
            with open(cls._services().paths.get_annotated_filepath(mask), "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except (OSError, PathError):
            return ""


# (width, height) pairs Flux Kontext prefers, about one megapixel each, portrait to landscape
KONTEXT_RESOLUTIONS = ((672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184),
                       (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752),
                       (1456, 720), (1504, 688), (1568, 672))


def kontext_size(width: int, height: int) -> tuple[int, int]:
    """The Kontext resolution whose aspect ratio is nearest ``width / height`` (the first on a tie)."""
    aspect = width / height
    _, w, h = min((abs(aspect - w / h), w, h) for w, h in KONTEXT_RESOLUTIONS)
    return w, h


class FluxKontextImageScale(BuiltinNode):
    """Resize an image to the Flux Kontext resolution nearest its aspect ratio (Lanczos, centre crop)."""

    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node resizes the image to one that is more optimal for flux kontext."
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "scale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",)}}

    def scale(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        from engine import image_ops

        if getattr(image, "ndim", None) != 4:
            raise input_error("FluxKontextImageScale", "image", "expected an IMAGE [B,H,W,C], got "
                              f"{getattr(image, 'shape', type(image).__name__)}")
        width, height = kontext_size(int(image.shape[2]), int(image.shape[1]))
        return (image_ops.common_upscale(image.movedim(-1, 1), width, height, "lanczos", "center").movedim(1, -1),)


NODES = [SaveText, CustomCombo, SeedNode, ComfyNumberConvert, ColorToRGBInt, LatentCutToBatch, ImageCropToMask,
         Painter, FluxKontextImageScale]
