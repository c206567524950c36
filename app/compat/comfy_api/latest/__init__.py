"""`comfy_api.latest`: `io` (node schema), `ui` (output helpers), `ComfyExtension` for `comfy_entrypoint`.

V3 nodes are converted to V1 classes when registered (`io.ComfyNode._loom_as_v1`), so Loom's executor
runs them like any other node.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from comfy_api.latest import io, ui


class ComfyExtension(ABC):
    """What a pack's `comfy_entrypoint()` returns: lists the pack's `io.ComfyNode` classes."""

    async def on_load(self) -> None:
        """Called once before `get_node_list`."""
        return None

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes of the pack."""


class ComfyAPI:
    """Placeholder of ComfyUI's runtime API object (progress goes through `comfy.utils.ProgressBar`)."""

    async def set_progress(self, value: float, max_value: float, node_id: Any = None, preview_image: Any = None,
                           ignore_size_limit: bool = False) -> None:
        import comfy.utils

        comfy.utils.ProgressBar(max_value, node_id).update_absolute(value, max_value, preview_image)


ComfyAPISync = ComfyAPI

__all__ = ["io", "ui", "ComfyExtension", "ComfyAPI", "ComfyAPISync"]
