"""The executor's EventSink for the server: ComfyUI's addressing rule (spec 2.1) and preview frames (2.3);
and the builders of the wire events the app itself sends (each payload is built here and nowhere else).
"""
from __future__ import annotations

import io
import logging
import time
import traceback as tb
from typing import Any, Protocol

from engine.preview import effective_preview_method
from executor.context import current

__all__ = ["HubSink", "EventHub", "CLIENT_ONLY_EVENTS", "effective_preview_method", "encode_preview",
           "status_data", "executing_done_data", "execution_start_data", "execution_error_data",
           "crash_error_data"]

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


class EventHub(Protocol):
    """Where a HubSink sends: the server's `Hub`, or a Ray worker's recorder."""

    def send(self, event: str, data: Any, sid: str | None = None) -> None: ...
    def send_preview(self, image: bytes, image_type: str, metadata: dict[str, Any], sid: str | None) -> None: ...


# -- wire event payloads the app sends (spec 2.2) ----------------------------------------------------------
def status_data(queue_remaining: int) -> dict[str, Any]:
    """`status`: how many prompts are queued or running."""
    return {"status": {"exec_info": {"queue_remaining": queue_remaining}}}


def executing_done_data(prompt_id: str) -> dict[str, Any]:
    """The final `executing {node: null}` of a prompt, sent after its history is written."""
    return {"node": None, "prompt_id": prompt_id}


def execution_start_data(prompt_id: str, started: float) -> dict[str, Any]:
    """`execution_start` of a prompt that started at `started` (seconds since the epoch)."""
    return {"prompt_id": prompt_id, "timestamp": int(started * 1000)}


def execution_error_data(prompt_id: str, exception_message: str, exception_type: str, traceback: list[str],
                         **extra: Any) -> dict[str, Any]:
    """`execution_error` for a failure outside any node (a crashed executor, a dead Ray worker)."""
    return {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
            "exception_message": exception_message, "exception_type": exception_type, "traceback": traceback,
            "current_inputs": {}, "current_outputs": [], "timestamp": int(time.time() * 1000), **extra}


def crash_error_data(prompt_id: str, exc: BaseException, traceback: list[str] | None = None) -> dict[str, Any]:
    """`execution_error` for an exception that escaped the executor (`traceback`: the remote one, if any)."""
    lines = traceback if traceback is not None else tb.format_exception(type(exc), exc, exc.__traceback__)
    return execution_error_data(prompt_id, f"{type(exc).__name__}: {exc}",
                                f"{type(exc).__module__}.{type(exc).__name__}", lines)


class HubSink:
    """Forwards one prompt's executor events to the hub, addressed as ComfyUI does."""

    def __init__(self, hub: EventHub, prompt_id: str, client_id: str | None, preview_method: str,
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
        ctx = current()
        if ctx is not None and str(ctx.node_id) == str(node_id):
            display, parent, real = str(ctx.display_node_id), ctx.parent_node_id, str(ctx.real_node_id)
        meta = {"node_id": node_id, "prompt_id": prompt_id, "display_node_id": display,
                "parent_node_id": parent, "real_node_id": real}
        self.hub.send_preview(jpeg, "image/jpeg", meta, self.client_id)
