"""Primitive value nodes the editor uses (ComfyUI `PrimitiveInt` / `Float` / `String` / `Boolean`)."""
from __future__ import annotations

import sys

from nodes._base import BuiltinNode, InputTypes

__all__ = ["PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"]


class PrimitiveString(BuiltinNode):
    """A string value."""

    DISPLAY_NAME = "String"
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("STRING", {})}}

    def execute(self, value: str) -> tuple[str]:
        return (value,)


class PrimitiveStringMultiline(PrimitiveString):
    """A multi-line string value."""

    DISPLAY_NAME = "String (Multiline)"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("STRING", {"multiline": True})}}


class PrimitiveInt(BuiltinNode):
    """An integer value."""

    DISPLAY_NAME = "Int"
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("INT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("INT", {"default": 0, "min": -sys.maxsize, "max": sys.maxsize,
                                               "control_after_generate": True})}}

    def execute(self, value: int) -> tuple[int]:
        return (value,)


class PrimitiveFloat(BuiltinNode):
    """A float value."""

    DISPLAY_NAME = "Float"
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("FLOAT", {"default": 0.0, "min": -sys.maxsize, "max": sys.maxsize})}}

    def execute(self, value: float) -> tuple[float]:
        return (value,)


class PrimitiveBoolean(BuiltinNode):
    """A boolean value."""

    DISPLAY_NAME = "Boolean"
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"value": ("BOOLEAN", {"default": False})}}

    def execute(self, value: bool) -> tuple[bool]:
        return (value,)


NODES = [PrimitiveInt, PrimitiveFloat, PrimitiveString, PrimitiveStringMultiline, PrimitiveBoolean]
