"""Newer ComfyUI nodes that workflow templates use everywhere: Switch, Image Compare, Resolution Selector.

They postdate ComfyUI 0.3.64; names, inputs and results follow ComfyUI's current source (comfy_extras
nodes_logic / nodes_image_compare / nodes_resolution).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from engine import image_utils
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.io import PreviewImage

if TYPE_CHECKING:
    import torch

__all__ = ["ComfySwitchNode", "ImageCompare", "ResolutionSelector"]

MATCHTYPE = "COMFY_MATCHTYPE_V3"


class ComfySwitchNode(BuiltinNode):
    """Pass on_true or on_false; only the chosen input is evaluated (lazy inputs)."""

    DISPLAY_NAME = "Switch"
    CATEGORY = "logic"
    DESCRIPTION = ("Routes one of two inputs to the output based on a boolean switch value, evaluating only the "
                   "selected branch lazily.")
    EXPERIMENTAL = True
    RETURN_TYPES = (MATCHTYPE,)
    RETURN_NAMES = ("output",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        branch = (MATCHTYPE, {"lazy": True, "template": {"template_id": "switch", "allowed_types": "*"}})
        return {"required": {"switch": ("BOOLEAN", {}), "on_false": branch, "on_true": branch}}

    def check_lazy_status(self, switch: bool, on_false: Any = None, on_true: Any = None) -> list[str]:
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []

    def execute(self, switch: bool, on_false: Any = None, on_true: Any = None) -> tuple[Any]:
        return (on_true if switch else on_false,)


class ImageCompare(PreviewImage):
    """Preview two images for the editor's compare slider (`ui.a_images` / `ui.b_images`, temp files)."""

    DISPLAY_NAME = "Image Compare"
    CATEGORY = "image"
    DESCRIPTION = "Compares two images side by side with a slider."
    EXPERIMENTAL = True
    FUNCTION = "compare"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"compare_view": ("IMAGECOMPARE", {"socketless": True})},
                "optional": {"image_a": ("IMAGE",), "image_b": ("IMAGE",)}}

    def compare(self, image_a: torch.Tensor | None = None, image_b: torch.Tensor | None = None,
                compare_view: Any = None) -> dict[str, Any]:
        result: dict[str, list[dict[str, str]]] = {"a_images": [], "b_images": []}
        for key, images, prefix in (("a_images", image_a, "comfy.compare.a"), ("b_images", image_b,
                                                                                "comfy.compare.b")):
            if images is not None and len(images) > 0:
                ui = cast("dict[str, list[dict[str, str]]]", self.save_images(images, prefix)["ui"])
                result[key] = ui["images"]
        return {"ui": result}


class ResolutionSelector(BuiltinNode):
    """Width and height for an aspect ratio and a megapixel target, rounded to a multiple."""

    DISPLAY_NAME = "Resolution Selector"
    CATEGORY = "utilities"
    DESCRIPTION = ("Calculate width and height from aspect ratio and megapixel target. Useful for setting up "
                   "Empty Latent Image dimensions.")
    RETURN_TYPES = ("INT", "INT")
    RETURN_NAMES = ("width", "height")
    OUTPUT_TOOLTIPS = ("Calculated width in pixels (multiple of 8).", "Calculated height in pixels (multiple of 8).")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "aspect_ratio": (list(image_utils.ASPECT_RATIOS), {
                "default": "1:1 (Square)", "tooltip": "The aspect ratio for the output dimensions."}),
            "megapixels": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 16.0, "step": 0.1,
                                     "tooltip": "Target total megapixels. 1.0 MP ≈ 1024×1024 for square."}),
            "multiple": ("INT", {"default": 8, "min": 8, "max": 128, "step": 4, "advanced": True,
                                 "tooltip": "Nearest multiple of the result to set the selected resolution to."}),
            "minimum": ("INT", {"default": 256, "min": 32, "max": 4096, "step": 32, "advanced": True,
                                "tooltip": "Set minimum resolution for any side to be used"}),
        }}

    def execute(self, aspect_ratio: str, megapixels: float, multiple: int = 8,
                minimum: int = 256) -> tuple[int, int]:
        if aspect_ratio not in image_utils.ASPECT_RATIOS:
            raise input_error("ResolutionSelector", "aspect_ratio",
                              f"{aspect_ratio!r} is not one of {list(image_utils.ASPECT_RATIOS)}")
        return image_utils.resolution_for(aspect_ratio, megapixels, multiple, minimum)


NODES = [ComfySwitchNode, ImageCompare, ResolutionSelector]
