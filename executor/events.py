"""How the executor reports: the ``EventSink`` protocol, ready-made sinks and the interrupt flag."""
from __future__ import annotations

import threading
import time
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class EventSink(Protocol):
    """Receives ComfyUI event names + payloads; the server addresses them to clients."""

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Report one event (``executing``, ``progress``, ``executed``, ...)."""

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        """Report a preview image (a PIL.Image) for ``node_id``; the server encodes it."""


class NullSink:
    """An ``EventSink`` that drops everything."""

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Drop the event."""

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        """Drop the preview."""


class CollectingSink:
    """An ``EventSink`` that records events in order (tests, headless runs)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.previews: list[tuple[str, str, Any]] = []

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Record the event."""
        self.events.append((event, data))

    def preview(self, prompt_id: str, node_id: str, image: Any) -> None:
        """Record the preview."""
        self.previews.append((prompt_id, node_id, image))

    def names(self) -> list[str]:
        """Return the event names in order."""
        return [name for name, _ in self.events]

    def of(self, event: str) -> list[dict[str, Any]]:
        """Return the payloads of every ``event`` in order."""
        return [data for name, data in self.events if name == event]


class InterruptFlag:
    """A thread-safe flag set by /interrupt and checked by the executor before every node."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Request an interrupt."""
        self._event.set()

    def clear(self) -> None:
        """Withdraw the request."""
        self._event.clear()

    def is_set(self) -> bool:
        """Return whether an interrupt is requested."""
        return self._event.is_set()


def now_ms() -> int:
    """Milliseconds since the epoch, the ``timestamp`` of ComfyUI events."""
    return int(time.time() * 1000)
