"""ComfyUI's `comfy.ldm.util` for packs: `exists` and `default`, the two helpers pack network code imports."""
from __future__ import annotations

from typing import Any

__all__ = ["default", "exists"]


def exists(value: Any) -> bool:
    """Whether `value` is not None."""
    return value is not None


def default(value: Any, fallback: Any) -> Any:
    """`value`, or `fallback` (called when it is a function) where `value` is None."""
    if value is not None:
        return value
    return fallback() if callable(fallback) else fallback
