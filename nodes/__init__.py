"""Loom's built-in nodes: ComfyUI names, inputs and outputs, as thin adapters over `engine`."""
from __future__ import annotations

from typing import Any

__all__ = ["register_builtin_nodes"]


def register_builtin_nodes(registry: Any, services: Any) -> None:
    """Register every built-in node class on `registry`, bound to `services` (see docs/architecture.md)."""
    # Filled in by the node catalogue work (issue 4).
    return None
