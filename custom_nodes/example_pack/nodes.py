"""The example nodes. Each class is a ComfyUI V1 node: INPUT_TYPES, RETURN_TYPES, FUNCTION, CATEGORY."""
from __future__ import annotations

from typing import Any

CATEGORY = "examples"


class ExampleTextJoin:
    """Pure Python: joins two strings with a chosen separator, repeated `repeat` times.

    Parameters:
        text_a, text_b: STRING widgets (text_a multiline).
        separator: COMBO (a list of choices is a dropdown).
        repeat: INT widget with a range (validation rejects values outside it before the prompt runs).
    """

    CATEGORY = CATEGORY
    DESCRIPTION = "Join two texts with a separator."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "join"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text_a": ("STRING", {"default": "hello", "multiline": True}),
                "text_b": ("STRING", {"default": "world"}),
                "separator": ([" ", ", ", " | ", "\n"], {"default": " "}),
                "repeat": ("INT", {"default": 1, "min": 1, "max": 10, "step": 1}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, text_a: str = "", text_b: str = "") -> bool | str:
        # Runs at validation time on literal inputs; a string return becomes a node error.
        if len(text_a) + len(text_b) > 10_000:
            return "texts are too long (more than 10000 characters together)"
        return True

    def join(self, text_a: str, text_b: str, separator: str, repeat: int) -> tuple[str]:
        return (separator.join([text_a, text_b] * repeat),)


class ExampleImageInvert:
    """Transforms an IMAGE tensor ([B,H,W,C] float32 0..1): blends each pixel towards its inverse.

    Parameters:
        image: IMAGE from another node (a socket, no widget).
        strength: FLOAT slider 0..1 (0 = unchanged, 1 = fully inverted).
        mask (optional): MASK [B,H,W] or [H,W]; only masked pixels (1.0) change.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "image": ("IMAGE",),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "display": "slider"}),
            },
            "optional": {"mask": ("MASK",)},
        }

    def invert(self, image: Any, strength: float, mask: Any = None) -> tuple[Any]:
        inverted = 1.0 - image
        weight = strength
        if mask is not None:
            m = mask if mask.ndim == 3 else mask.unsqueeze(0)
            weight = strength * m.unsqueeze(-1).to(image.dtype)  # [B,H,W,1] broadcasts over channels
        # Never modify the input in place: other nodes may hold the same tensor.
        return ((image * (1 - weight) + inverted * weight).clamp(0.0, 1.0),)


class ExampleLazySwitch:
    """Lazy inputs: only the branch that is selected gets executed.

    Inputs marked `"lazy": True` arrive as None until `check_lazy_status` asks for them; the executor then
    runs the nodes feeding them and calls `check_lazy_status` again.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("*",)
    FUNCTION = "switch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "use_first": ("BOOLEAN", {"default": True}),
                "first": ("*", {"lazy": True}),
                "second": ("*", {"lazy": True}),
            }
        }

    def check_lazy_status(self, use_first: bool, first: Any = None, second: Any = None) -> list[str]:
        wanted = "first" if use_first else "second"
        return [wanted] if (first if use_first else second) is None else []

    def switch(self, use_first: bool, first: Any = None, second: Any = None) -> tuple[Any]:
        return (first if use_first else second,)


class ExampleShowText:
    """An output node: shows its input on the node (the `ui` dict goes to history and the editor)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*",)}}

    def show(self, value: Any) -> dict[str, Any]:
        text = value if isinstance(value, str) else repr(value)
        return {"ui": {"text": [text]}, "result": (text,)}
