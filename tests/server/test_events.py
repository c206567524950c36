"""HubSink: ComfyUI's addressing rule (spec 2.1) and preview method selection."""
from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from app.events import HubSink, effective_preview_method


class RecordingHub:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, str | None]] = []
        self.previews: list[tuple[str, dict[str, Any], str | None]] = []

    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        self.sent.append((event, data, sid))

    def send_preview(self, image: bytes, image_type: str, meta: dict[str, Any], sid: str | None) -> None:
        self.previews.append((image_type, meta, sid))


EVENTS = ["execution_start", "execution_cached", "executing", "progress", "progress_state", "executed",
          "execution_success", "execution_error", "execution_interrupted", "my_pack_event"]


def run(client_id: str | None) -> list[tuple[str, Any, str | None]]:
    hub = RecordingHub()
    sink = HubSink(hub, "p", client_id, "none", 512)  # type: ignore[arg-type]
    for ev in EVENTS:
        sink.emit(ev, {"node": "3", "prompt_id": "p"})
    sink.emit("executing", {"node": None, "prompt_id": "p"})  # the worker sends this one, after history
    return hub.sent


def test_with_client_everything_goes_to_it() -> None:
    sent = run("c")
    assert [e for e, _, _ in sent] == EVENTS
    assert {sid for _, _, sid in sent} == {"c"}


def test_without_client_only_broadcast_kinds() -> None:
    sent = run(None)
    assert [e for e, _, _ in sent] == ["progress", "progress_state", "execution_interrupted", "my_pack_event"]
    assert {sid for _, _, sid in sent} == {None}


def test_execution_blocked_error_is_broadcast() -> None:
    hub = RecordingHub()
    sink = HubSink(hub, "p", None, "none", 512)  # type: ignore[arg-type]
    sink.emit("execution_error", {"exception_type": "ExecutionBlocked", "prompt_id": "p"})
    sink.emit("execution_error", {"exception_type": "builtins.ValueError", "prompt_id": "p"})
    assert [(e, d["exception_type"]) for e, d, _ in hub.sent] == [("execution_error", "ExecutionBlocked")]


@pytest.mark.parametrize("server, extra, expected", [
    ("none", {}, "none"), ("auto", {}, "auto"), ("none", {"preview_method": "taesd"}, "taesd"),
    ("auto", {"preview_method": "default"}, "auto"), ("latent2rgb", {"preview_method": 5}, "latent2rgb"),
    ("auto", {"preview_method": "none"}, "none"),
])
def test_preview_method(server: str, extra: dict[str, Any], expected: str) -> None:
    assert effective_preview_method(server, extra) == expected


def test_preview_encoding_and_bad_images() -> None:
    hub = RecordingHub()
    sink = HubSink(hub, "p", "c", "auto", 64)  # type: ignore[arg-type]
    sink.preview("p", "3", Image.new("RGBA", (256, 128)))
    sink.preview("p", "3", "not an image")  # dropped with a warning, never raises
    assert len(hub.previews) == 1
    image_type, meta, sid = hub.previews[0]
    assert image_type == "image/jpeg" and sid == "c" and meta["node_id"] == "3" and meta["prompt_id"] == "p"
    off = HubSink(hub, "p", "c", "none", 64)  # type: ignore[arg-type]
    off.preview("p", "3", Image.new("RGB", (8, 8)))
    assert len(hub.previews) == 1
