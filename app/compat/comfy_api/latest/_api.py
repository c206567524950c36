"""The one implementation behind every `comfy_api` version: the runtime API object and the extension base.

ComfyUI versions its API (`comfy_api.latest`, `v0_0_3`, `v0_0_2`, `v0_0_1`); each version module is a thin
facade that subclasses `ComfyAPI_latest` with its VERSION and re-exports names from here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from comfy_api.latest import io

from engine.video import VideoInput


def _node_context(node_id: str | None) -> Any:
    from executor.context import current

    ctx = current()
    if ctx is None:
        if node_id is None:
            raise ValueError("set_progress: node_id must be provided if not in executing context")
        raise RuntimeError(
            f"set_progress(node_id={node_id!r}) was called outside a running node; Loom reports progress "
            "through the executing node's context, so call it from the node's own function"
        )
    return ctx


def _preview(image: Any) -> Any:
    # ComfyUI takes a PIL image or an IMAGE tensor ([B,H,W,C] or [H,W,C], 0..1); Loom's context takes PIL.
    if isinstance(image, torch.Tensor):
        from PIL import Image

        frame = image[0] if image.ndim == 4 else image
        return Image.fromarray((frame.detach().cpu().clamp(0, 1).numpy() * 255).astype("uint8"))
    return image


def report_progress(value: float, max_value: float, node_id: str | None = None, preview_image: Any = None,
                    ignore_size_limit: bool = False) -> None:
    """Show `value` of `max_value` (and a preview) on the running node's progress bar."""
    _node_context(node_id).progress(value, max_value, _preview(preview_image))


class ComfyAPI_latest:
    """`api.execution.set_progress(...)`, awaited (ComfyUI's `ComfyAPI`)."""

    VERSION: ClassVar[str] = "latest"
    STABLE: ClassVar[bool] = False

    class Execution:
        async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                               preview_image: Any = None, ignore_size_limit: bool = False) -> None:
            """Update the running node's progress bar (ComfyUI: `ComfyAPI.execution.set_progress`)."""
            report_progress(value, max_value, node_id, preview_image, ignore_size_limit)

    def __init__(self) -> None:
        self.execution = self.Execution()


class _SyncExecution:
    def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                     preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        """Update the running node's progress bar (ComfyUI: `ComfyAPISync.execution.set_progress`)."""
        report_progress(value, max_value, node_id, preview_image, ignore_size_limit)


def sync_api(api: type[ComfyAPI_latest]) -> type:
    """The synchronous twin of an API version (ComfyUI's `create_sync_class`): same calls, not awaited."""

    def __init__(self: Any) -> None:
        self.execution = _SyncExecution()

    return type(f"{api.__name__}Sync", (), {"VERSION": api.VERSION, "STABLE": api.STABLE, "__init__": __init__,
                                             "__doc__": f"Synchronous {api.__name__}."})


class ComfyExtension(ABC):
    """What a pack's `comfy_entrypoint()` returns: lists the pack's `io.ComfyNode` classes."""

    async def on_load(self) -> None:
        """Called once before `get_node_list`."""
        return None

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes of the pack."""


class Input:
    """Type names for node inputs (ComfyUI's `comfy_api.latest.Input`), the types Loom passes."""

    Image = torch.Tensor
    Mask = torch.Tensor
    Latent = dict
    Audio = dict
    Video = VideoInput
