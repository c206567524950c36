"""Template staples built on ComfyUI's dynamic inputs (Autogrow, DynamicCombo; see executor.dynamic_inputs).

They postdate ComfyUI 0.3.64; names, inputs and results follow ComfyUI's current source (comfy_extras
nodes_post_processing `ResizeImageMaskNode` / `Batch*Node`, nodes_math `ComfyMathExpression`):

* ``BatchImagesNode`` / ``BatchMasksNode`` / ``BatchLatentsNode``: an Autogrow of 2..50 inputs batched
  into one, later items resized (bilinear, center crop) to the first; RGB images padded with an opaque
  alpha when another is RGBA.
* ``ResizeImageMaskNode``: an IMAGE or MASK resized by one of nine rules chosen by a DynamicCombo.
* ``ComfyMathExpression``: a safe arithmetic expression (simpleeval) over an Autogrow of numbers named
  ``a``..``z``; results as FLOAT, INT and BOOL.
"""
from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Any

from engine import image_ops
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.latent_ops import _match_latent
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch

__all__ = ["BatchImagesNode", "BatchLatentsNode", "BatchMasksNode", "ComfyMathExpression", "ResizeImageMaskNode"]

AUTOGROW = "COMFY_AUTOGROW_V3"
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
MATCHTYPE = "COMFY_MATCHTYPE_V3"
SCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]


def _autogrow_prefix(type_: str, prefix: str, minimum: int, maximum: int) -> tuple[str, dict[str, Any]]:
    return (AUTOGROW, {"template": {"input": {"required": {prefix: (type_, {})}}, "prefix": prefix,
                                    "min": minimum, "max": maximum}})


# --- batching ----------------------------------------------------------------------------------------------

def _to_nchw(x: torch.Tensor, image: bool) -> torch.Tensor:
    return x.movedim(-1, 1) if image else x.unsqueeze(1)


def _from_nchw(x: torch.Tensor, image: bool) -> torch.Tensor:
    return x.movedim(1, -1) if image else x.squeeze(1)


def batch_images(images: list[torch.Tensor]) -> torch.Tensor:
    import torch
    channels = max(int(image.shape[-1]) for image in images)
    padded = [torch.nn.functional.pad(image, (0, 1), value=1.0) if image.shape[-1] < channels else image
              for image in images]
    first = padded[0].shape
    return torch.cat([image if image.shape[1:] == first[1:] else
                      _from_nchw(image_ops.common_upscale(_to_nchw(image, True), first[2], first[1], "bilinear",
                                                          "center"), True)
                      for image in padded])


def batch_masks(masks: list[torch.Tensor]) -> torch.Tensor:
    import torch
    first = masks[0].shape
    return torch.cat([mask if mask.shape[1:] == first[1:] else
                      _from_nchw(image_ops.common_upscale(_to_nchw(mask, False), first[2], first[1], "bilinear",
                                                         "center"), False)
                      for mask in masks])


def batch_latents(latents: list[Latent], class_name: str) -> Latent:
    import torch
    first = latents[0]["samples"]
    out: Latent = {**latents[0]}
    index: list[int] = []
    parts = []
    for i, latent in enumerate(latents):
        samples = latent["samples"]
        parts.append(_match_latent(first, samples.to(first), class_name, f"latents.latent{i}", repeat_batch=False))
        index.extend(latent.get("batch_index", range(samples.shape[0])))
    out["samples"] = torch.cat(parts)
    out["batch_index"] = index
    return out


class _BatchNode(BuiltinNode):
    CATEGORY = "image"
    FUNCTION = "execute"


class BatchImagesNode(_BatchNode):
    """Batch any number of images (2..50) into one IMAGE batch."""

    DISPLAY_NAME = "Batch Images"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"images": _autogrow_prefix("IMAGE", "image", 2, 50)}}

    def execute(self, images: dict[str, torch.Tensor]) -> tuple[torch.Tensor]:
        if not images:
            raise input_error("BatchImagesNode", "images", "connect at least one image")
        return (batch_images(list(images.values())),)


class BatchMasksNode(_BatchNode):
    """Batch any number of masks (2..50) into one MASK batch."""

    DISPLAY_NAME = "Batch Masks"
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"masks": _autogrow_prefix("MASK", "mask", 2, 50)}}

    def execute(self, masks: dict[str, torch.Tensor]) -> tuple[torch.Tensor]:
        if not masks:
            raise input_error("BatchMasksNode", "masks", "connect at least one mask")
        return (batch_masks(list(masks.values())),)


class BatchLatentsNode(_BatchNode):
    """Batch any number of latents (2..50) into one LATENT batch (batch_index lists joined)."""

    DISPLAY_NAME = "Batch Latents"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"latents": _autogrow_prefix("LATENT", "latent", 2, 50)}}

    def execute(self, latents: dict[str, Latent]) -> tuple[Latent]:
        if not latents:
            raise input_error("BatchLatentsNode", "latents", "connect at least one latent")
        return (batch_latents(list(latents.values()), "BatchLatentsNode"),)


# --- resizing ----------------------------------------------------------------------------------------------

def _size(x: torch.Tensor) -> tuple[int, int]:
    """(width, height) of an NHWC image or an NHW mask."""
    return (int(x.shape[2]), int(x.shape[1]))


def _resize(x: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    image = x.dim() == 4
    return _from_nchw(image_ops.common_upscale(_to_nchw(x, image), width, height, method, crop), image)


def _scale_dimensions(x: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    if width == 0 and height == 0:
        return x
    w, h = _size(x)
    if width == 0:
        width = max(1, round(w * height / h))
    elif height == 0:
        height = max(1, round(h * width / w))
    return _resize(x, width, height, method, crop)


def _scale_side(x: torch.Tensor, size: int, method: str, longer: bool) -> torch.Tensor:
    w, h = _size(x)
    if w == h:
        return _resize(x, size, size, method)
    width_is_target = (w > h) == longer
    if width_is_target:
        return _resize(x, size, round(h / w * size), method)
    return _resize(x, round(w / h * size), size, method)


def _scale_total_pixels(x: torch.Tensor, megapixels: float, method: str) -> torch.Tensor:
    w, h = _size(x)
    scale = math.sqrt(int(megapixels * 1024 * 1024) / (w * h))
    return _resize(x, round(w * scale), round(h * scale), method)


def _scale_to_multiple(x: torch.Tensor, multiple: int, method: str) -> torch.Tensor:
    """Cover-scale to the largest size divisible by `multiple`, then center-crop (ComfyUI's rule)."""
    if multiple <= 1:
        return x
    w, h = _size(x)
    tw, th = (w // multiple) * multiple, (h // multiple) * multiple
    if tw == 0 or th == 0 or (tw, th) == (w, h):
        return x
    if tw / w >= th / h:
        sw, sh = tw, max(th, math.ceil(h * (tw / w)))
    else:
        sw, sh = max(tw, math.ceil(w * (th / h))), th
    out = _resize(x, sw, sh, method)
    x0, y0 = (sw - tw) // 2, (sh - th) // 2
    return out[:, y0:y0 + th, x0:x0 + tw]


def resize(x: torch.Tensor, method: str, rule: dict[str, Any]) -> torch.Tensor:
    """Resize an IMAGE (NHWC) or MASK (NHW) by the chosen DynamicCombo option of ResizeImageMaskNode."""
    kind = rule["resize_type"]
    if kind == "scale dimensions":
        return _scale_dimensions(x, int(rule["width"]), int(rule["height"]), method, rule.get("crop", "center"))
    if kind == "scale by multiplier":
        w, h = _size(x)
        return _resize(x, round(w * float(rule["multiplier"])), round(h * float(rule["multiplier"])), method)
    if kind == "scale longer dimension":
        return _scale_side(x, int(rule["longer_size"]), method, longer=True)
    if kind == "scale shorter dimension":
        return _scale_side(x, int(rule["shorter_size"]), method, longer=False)
    if kind == "scale width":
        return _scale_dimensions(x, int(rule["width"]), 0, method)
    if kind == "scale height":
        return _scale_dimensions(x, 0, int(rule["height"]), method)
    if kind == "scale total pixels":
        return _scale_total_pixels(x, float(rule["megapixels"]), method)
    if kind == "match size":
        w, h = _size(rule["match"])
        return _resize(x, w, h, method, rule.get("crop", "center"))
    if kind == "scale to multiple":
        return _scale_to_multiple(x, int(rule["multiple"]), method)
    raise input_error("ResizeImageMaskNode", "resize_type", f"unknown resize type {kind!r}")


def _int(tooltip: str, default: int = 512, minimum: int = 0) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": minimum, "max": MAX_RESOLUTION, "step": 1, "tooltip": tooltip})


_CROP = (CROP_METHODS, {"default": "center", "tooltip": "How to handle aspect ratio mismatch: 'disabled' "
                                                         "stretches to fit, 'center' crops to maintain aspect ratio."})
_IMAGE_OR_MASK = {"template_id": "input_type", "allowed_types": "IMAGE,MASK"}
RESIZE_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("scale dimensions", {
        "width": _int("Target width in pixels. Set to 0 to auto-calculate from height while preserving aspect "
                      "ratio."),
        "height": _int("Target height in pixels. Set to 0 to auto-calculate from width while preserving aspect "
                       "ratio."),
        "crop": _CROP}),
    ("scale by multiplier", {"multiplier": ("FLOAT", {
        "default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01,
        "tooltip": "Scale factor (e.g., 2.0 doubles size, 0.5 halves size)."})}),
    ("scale longer dimension", {"longer_size": _int("The longer edge will be resized to this value. Aspect ratio "
                                                    "is preserved.")}),
    ("scale shorter dimension", {"shorter_size": _int("The shorter edge will be resized to this value. Aspect "
                                                      "ratio is preserved.")}),
    ("scale width", {"width": _int("Target width in pixels. Height auto-adjusts to preserve aspect ratio.")}),
    ("scale height", {"height": _int("Target height in pixels. Width auto-adjusts to preserve aspect ratio.")}),
    ("scale total pixels", {"megapixels": ("FLOAT", {
        "default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01,
        "tooltip": "Target total megapixels (e.g., 1.0 ≈ 1024×1024). Aspect ratio is preserved."})}),
    ("match size", {"match": ("IMAGE,MASK", {"tooltip": "Resize input to match the dimensions of this reference "
                                                        "image or mask."}),
                    "crop": _CROP}),
    ("scale to multiple", {"multiple": _int("Resize so width and height are divisible by this number. Useful for "
                                            "latent alignment (e.g., 8 or 64).", default=8, minimum=1)}),
]


class ResizeImageMaskNode(BuiltinNode):
    """Resize an image or mask: by dimensions, a factor, one side, total pixels, another image, or a multiple."""

    DISPLAY_NAME = "Resize Image/Mask"
    CATEGORY = "transform"
    DESCRIPTION = "Resize an image or mask using various scaling methods."
    RETURN_TYPES = (MATCHTYPE,)
    RETURN_NAMES = ("resized",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "input": (MATCHTYPE, {"template": _IMAGE_OR_MASK}),
            "resize_type": (DYNAMIC_COMBO, {
                "tooltip": "Select how to resize: by exact dimensions, scale factor, matching another image, etc.",
                "options": [{"key": key, "inputs": {"required": inputs}} for key, inputs in RESIZE_OPTIONS]}),
            "scale_method": (SCALE_METHODS, {
                "default": "area", "tooltip": "Interpolation algorithm. 'area' is best for downscaling, 'lanczos' "
                                              "for upscaling, 'nearest-exact' for pixel art."}),
        }}

    def execute(self, input: torch.Tensor, resize_type: dict[str, Any], scale_method: str) -> tuple[torch.Tensor]:
        if input.dim() not in (3, 4):
            raise input_error("ResizeImageMaskNode", "input",
                              f"expected an IMAGE [B,H,W,C] or a MASK [B,H,W], got shape {list(input.shape)}")
        return (resize(input, scale_method, resize_type),)


# --- math --------------------------------------------------------------------------------------------------

MAX_EXPONENT = 4000


def _sum(*args: Any) -> Any:
    return sum(args[0]) if len(args) == 1 and hasattr(args[0], "__iter__") else sum(args)


def _pow(base: Any, exp: Any) -> Any:
    if abs(exp) > MAX_EXPONENT:
        raise ValueError(f"exponent {exp} exceeds the maximum allowed ({MAX_EXPONENT})")
    return pow(base, exp)


MATH_FUNCTIONS: dict[str, Any] = {
    "sum": _sum, "min": min, "max": max, "abs": abs, "round": round, "pow": _pow, "sqrt": math.sqrt,
    "ceil": math.ceil, "floor": math.floor, "log": math.log, "log2": math.log2, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "int": int, "float": float,
}


def evaluate(expression: str, values: dict[str, Any]) -> Any:
    """Evaluate a math expression over named values with simpleeval (no attribute access, no imports)."""
    from simpleeval import simple_eval
    names = {**values, "values": list(values.values())}
    return simple_eval(expression, names=names, functions=MATH_FUNCTIONS)


class ComfyMathExpression(BuiltinNode):
    """Evaluate an arithmetic/comparison expression over inputs a, b, c, ... (FLOAT, INT or BOOLEAN)."""

    DISPLAY_NAME = "Math Expression"
    CATEGORY = "logic"
    RETURN_TYPES = ("FLOAT", "INT", "BOOLEAN")
    RETURN_NAMES = ("FLOAT", "INT", "BOOL")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        member = ("FLOAT,INT,BOOLEAN", {"forceInput": True})
        return {"required": {
            "expression": ("STRING", {"default": "a + b", "multiline": True}),
            "values": (AUTOGROW, {"template": {"input": {"required": {"value": member}},
                                               "names": list(string.ascii_lowercase), "min": 1}}),
        }}

    def execute(self, expression: str, values: dict[str, Any] | None = None) -> tuple[float, int, bool]:
        if not expression.strip():
            raise input_error("ComfyMathExpression", "expression", "the expression is empty")
        try:
            result = evaluate(expression, dict(values or {}))
        except Exception as ex:
            raise input_error("ComfyMathExpression", "expression", f"{expression!r} failed: {ex}") from ex
        if not isinstance(result, (bool, int, float)):
            raise input_error("ComfyMathExpression", "expression",
                              f"{expression!r} must give a number or a boolean, got {type(result).__name__}: "
                              f"{result!r}")
        if not math.isfinite(result):
            raise input_error("ComfyMathExpression", "expression", f"{expression!r} gave {result}")
        return (float(result), int(result), bool(result))


NODES = [BatchImagesNode, BatchMasksNode, BatchLatentsNode, ResizeImageMaskNode, ComfyMathExpression]
