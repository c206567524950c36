"""ComfyUI's `comfy.comfy_types`: typing helpers for V1 nodes (`IO`, `ComfyNodeABC`, `InputTypeDict`)."""
from __future__ import annotations

from comfy.comfy_types.node_typing import (
    IO,
    CheckLazyMixin,
    ComfyNodeABC,
    FileLocator,
    InputTypeDict,
    InputTypeOptions,
)

__all__ = ["IO", "ComfyNodeABC", "CheckLazyMixin", "InputTypeDict", "InputTypeOptions", "FileLocator"]
