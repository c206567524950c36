"""The executor's EventSink for the server: ComfyUI's addressing rule (spec 2.1) and preview frames (2.3)."""
from __future__ import annotations

import io
import logging
from typing import Any

from app.hub import Hub
from engine.preview import effective_preview_method

__all__ = ["HubSink", "CLIENT_ONLY_EVENTS", "effective_preview_method", "encode_preview"]

log = logging.getLogger("loom.events")

# Sent only to the prompt's client; dropped when the prompt has no client_id.
CLIENT_ONLY_EVENTS = frozenset({"executing", "executed", "execution_start", "execution_cached",
                                "execution_success", "execution_error"})


def encode_preview(image: Any, max_size: int) -> bytes:
    """A PIL image shrunk to fit `max_size` (bilinear, aspect kept) as JPEG quality 95."""
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        raise TypeError(f"preview must be a PIL.Image, got {type(image).__name__}")
    img = image.convert("RGB")
    if max(img.size) > max_size:
        img = ImageOps.contain(img, (max_size, max_size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class HubSink:
    """Forwards one prompt's executor events to the hub, addressed as ComfyUI does."""

    def __init__(self, hub: Hub, prompt_id: str, client_id: str | None, preview_method: str,
                 preview_size: int) -> None:
        self.hub = hub
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.preview_method = preview_method
        self.preview_size = preview_size

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Send one event; the final `executing {node: null}` is the worker's, after history is written."""
        if event == "executing" and isinstance(data, dict) and data.get("node") is None:
            return
        if event in CLIENT_ONLY_EVENTS and self.client_id is None:
            blocked = event == "execution_error" and isinstance(data, dict) and \
                data.get("exception_type") == "ExecutionBlocked"
            if not blocked:
                return
        self.hub.send(event, data, self.client_id)

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        """Encode and send a preview frame when a preview method is active."""
        if self.preview_method == "none":
            return
        try:
            jpeg = encode_preview(image, self.preview_size)
        except Exception as exc:  # a bad preview must never fail the prompt
            log.warning("prompt %s node %s: preview dropped: %s", prompt_id, node_id, exc)
            return
        display, parent, real = node_id, None, node_id
        try:
            from executor.context import current

            ctx = current()
            if ctx is not None and str(ctx.node_id) == str(node_id):
                display = str(getattr(ctx, "display_node_id", node_id))
                parent = getattr(ctx, "parent_node_id", None)
                real = str(getattr(ctx, "real_node_id", node_id))
        except ImportError:
            pass
        meta = {"node_id": node_id, "prompt_id": prompt_id, "display_node_id": display,
                "parent_node_id": parent, "real_node_id": real}
        self.hub.send_preview(jpeg, "image/jpeg", meta, self.client_id)
