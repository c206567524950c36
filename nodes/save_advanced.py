"""SaveImageAdvanced and ImageColorSpace, as ComfyUI's current comfy_extras nodes_images declares them.

* ``SaveImageAdvanced``: images to output/ as ``<prefix>_<counter:05>.<png|exr|avif>`` (no trailing underscore,
  unlike SaveImage), one file per image (an AVIF ``animated`` save mode writes the batch as one file). The
  ``format`` DynamicCombo picks the format and its inputs: png (``bit_depth`` 8-bit / 16-bit,
  ``input_color_space`` sRGB), exr (32-bit float; sRGB / HDR / linear input, written scene-linear) or avif
  (``bit_depth``, ``input_color_space``, ``crf``, and a nested ``save_mode`` combo: still images, or animated
  with ``fps`` and ``loop_count``). Each file carries the prompt and workflow (PNG text chunks, EXR header
  attributes, an AVIF Exif item) unless metadata is disabled. Passes the images through and returns ComfyUI's
  ``ui.images`` entries.
* ``ImageColorSpace``: convert between sRGB, HDR (HLG) and HDR PQ (``engine.color_space``).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engine.image_format_names import (
    AVIF_DEPTHS,
    AVIF_SPACES,
    COLOR_SPACES,
    EXR_DEPTHS,
    EXR_SPACES,
    PNG_DEPTHS,
)
from engine.png import metadata_text
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    import torch

__all__ = ["SaveImageAdvanced", "ImageColorSpace"]

DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
_EXR_SPACE_TIP = (
    "Colorspace of the input tensor. The EXR is always written as scene-linear in the matching gamut.\n"
    "sRGB — input is sRGB-encoded Rec.709; the inverse sRGB EOTF is applied.\n"
    "HDR — input is HLG-encoded Rec.2020 (BT.2100); the inverse HLG OETF is applied to get scene-linear light.\n"
    "linear — input is already scene-linear (Rec.709 primaries); written through unchanged. Use this for "
    "renderer/compositor output.")


def _combo(options: tuple[str, ...], **extra: Any) -> tuple[list[str], dict[str, Any]]:
    return list(options), {"default": options[0], "advanced": True, **extra}


def _format_options() -> list[dict[str, Any]]:
    save_modes = [
        {"key": "still images", "inputs": {"required": {}}},
        {"key": "animated", "inputs": {"required": {
            "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            "loop_count": ("INT", {"default": 0, "min": 0, "max": 1000, "advanced": True,
                                   "tooltip": "Number of times to loop the animation. 0 loops forever."})}}}]
    return [
        {"key": "png", "inputs": {"required": {"bit_depth": _combo(PNG_DEPTHS),
                                               "input_color_space": _combo(("sRGB",))}}},
        {"key": "exr", "inputs": {"required": {
            "bit_depth": _combo(EXR_DEPTHS),
            "input_color_space": _combo(EXR_SPACES, tooltip=_EXR_SPACE_TIP)}}},
        {"key": "avif", "inputs": {"required": {
            "bit_depth": _combo(AVIF_DEPTHS,
                                tooltip="Auto uses 8-bit YUV420 for sRGB and 10-bit YUV420 for HDR."),
            "input_color_space": _combo(AVIF_SPACES, tooltip=(
                "Colorspace of the input images. HDR selects BT.2020/HLG and HDR PQ selects BT.2020/PQ.")),
            "crf": ("INT", {"default": 18, "min": 1, "max": 63, "advanced": True,
                            "tooltip": "Lower values produce higher quality and larger files."}),
            "save_mode": (DYNAMIC_COMBO, {"display_name": "save mode", "options": save_modes}),
        }}},
    ]


class SaveImageAdvanced(BuiltinNode):
    """Save images as 8/16-bit PNG, float EXR or AVIF in output/, with the prompt and workflow embedded."""

    DISPLAY_NAME = "Save Image (Advanced)"
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": (
                    "The prefix for the file to save. May include formatting tokens such as %date:yyyy-MM-dd% or "
                    "%Empty Latent Image.width%.")}),
                "format": (DYNAMIC_COMBO, {"tooltip": "The file format in which to save the image.",
                                           "options": _format_options()}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def execute(self, images: torch.Tensor, filename_prefix: str, format: dict[str, Any], prompt: Any = None,
                extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        if getattr(images, "ndim", None) not in (3, 4) or images.shape[0] == 0:
            raise input_error("SaveImageAdvanced", "images", "expected a non-empty IMAGE batch [B,H,W,C] (or "
                              f"grayscale [B,H,W]), got {getattr(images, 'shape', type(images).__name__)}")
        services = self._services()
        target = save_target("SaveImageAdvanced", services, filename_prefix, width=images.shape[2],
                             height=images.shape[1])
        from engine import (  # torch: loaded when an image is saved, not at registration
            avif_metadata,
        )

        kind = format["format"]
        embed = not services.disable_metadata
        animated = kind == "avif" and format["save_mode"]["save_mode"] == "animated"
        # one file per image, or the whole batch as one animated AVIF
        groups = [images] if animated else [image[None] for image in images]
        results: list[dict[str, str]] = []
        try:
            for number, group in enumerate(groups):
                name = target.filename.replace("%batch_num%", str(number))
                file = f"{name}_{target.counter + number:05}.{kind}"
                path = os.path.join(target.full_output_folder, file)
                if kind == "avif":
                    exif = avif_metadata.exif_block(prompt, extra_pnginfo) if embed else b""
                    self._save_avif(path, group, format, exif)
                else:
                    metadata = list(metadata_text(prompt, extra_pnginfo).items()) if embed else []
                    with open(path, "wb") as fh:
                        fh.write(self._encode(kind, group[0], format, metadata, embed))
                results.append({"filename": file, "subfolder": target.subfolder, "type": "output"})
        except ValueError as exc:
            raise input_error("SaveImageAdvanced", "format", str(exc)) from exc
        ui: dict[str, Any] = {"images": results}
        if animated and images.shape[0] > 1:
            ui["animated"] = (True,)
        return {"ui": ui, "result": (images,)}

    @staticmethod
    def _encode(kind: str, image: torch.Tensor, format: dict[str, Any], metadata: list[tuple[str, str]],
                embed: bool) -> bytes:
        from engine import image_files

        space = format.get("input_color_space", "sRGB")
        if kind == "png":
            if space != "sRGB":
                raise ValueError(f"PNG input colour space {space!r} is not one of ['sRGB']")
            return image_files.png_with_text(image_files.encode_png(image, format["bit_depth"]), metadata)
        if kind == "exr":
            if format["bit_depth"] not in EXR_DEPTHS:
                raise ValueError(f"EXR bit depth {format['bit_depth']!r} is not one of {list(EXR_DEPTHS)}")
            data = image_files.encode_exr(image, space)
            if not embed:
                return data
            return image_files.exr_with_attributes(data, metadata, "Rec.2020" if space == "HDR" else "Rec.709")
        raise ValueError(f"format {kind!r} is not one of ['png', 'exr', 'avif']")

    @staticmethod
    def _save_avif(path: str, batch: torch.Tensor, format: dict[str, Any], exif: bytes) -> None:
        from engine import avif

        mode = format["save_mode"]
        animated = mode["save_mode"] == "animated"
        avif.save_avif(path, batch, format["bit_depth"], format["input_color_space"], int(format["crf"]),
                       fps=float(mode.get("fps", 1.0)), loop_count=int(mode["loop_count"]) if animated else None,
                       exif=exif)


class ImageColorSpace(BuiltinNode):
    """Convert images between sRGB (Rec.709), HDR (Rec.2020 HLG) and HDR PQ (Rec.2020 PQ)."""

    DISPLAY_NAME = "Convert Image Color Space"
    CATEGORY = "image/color"
    DESCRIPTION = (
        "Convert sRGB (Rec.709), HDR (Rec.2020 HLG), and HDR PQ (Rec.2020 PQ). Uses 203-nit SDR white and a "
        "1000-nit HLG reference display. Narrowing tone-maps excess luminance across the batch and compresses "
        "out-of-gamut colors. Conversions compute in float32 and return the intermediate device and dtype. "
        "Straight alpha is not color-transformed.")
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        spaces = list(COLOR_SPACES)
        return {"required": {
            "image": ("IMAGE",),
            "source": (spaces, {"default": "sRGB", "tooltip": "Color space of the input pixels."}),
            "destination": (spaces, {"default": "sRGB", "tooltip": (
                "Color space of the output pixels. Set the save node to this same color space.")}),
        }}

    def execute(self, image: torch.Tensor, source: str, destination: str) -> tuple[torch.Tensor]:
        if getattr(image, "ndim", None) != 4 or image.shape[-1] not in (3, 4):
            raise input_error("ImageColorSpace", "image", "expected an IMAGE [B,H,W,3 or 4], got "
                              f"{getattr(image, 'shape', type(image).__name__)}")
        from engine import color_space

        try:
            return (color_space.convert(image, source, destination),)
        except ValueError as exc:
            raise input_error("ImageColorSpace", "source" if source not in COLOR_SPACES else "destination",
                              str(exc)) from exc


NODES = [SaveImageAdvanced, ImageColorSpace]
