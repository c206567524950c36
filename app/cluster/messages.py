"""The messages a worker actor streams back while it runs one prompt (`LoomWorker.run`), in order.

They cross Ray as pickled dataclasses; the backend (`RayBackend.consume`) hands every message but the last
to the run's handler and returns the last (`Outcome` -> `ExecutionOutcome`, or `Crash`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.cluster.files import ShippedFile


@dataclass(frozen=True)
class Event:
    """An executor event; `executed` carries the files its ui names."""

    name: str
    data: dict[str, Any]
    files: list[ShippedFile]


@dataclass(frozen=True)
class Preview:
    """A preview frame, already encoded by HubSink's rules."""

    image: bytes
    image_type: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Send:
    """A custom node's `PromptServer.send_sync`."""

    event: str
    data: Any
    sid: str | None


@dataclass(frozen=True)
class Files:
    """Files the prompt wrote that no ui dict names."""

    files: list[ShippedFile]


@dataclass(frozen=True)
class Outcome:
    """The run's end: `ExecutionOutcome.to_dict()`."""

    outcome: dict[str, Any]


@dataclass(frozen=True)
class Crash:
    """The run's end when the executor raised: the exception as text and the actor's traceback."""

    message: str
    traceback: list[str]


Message = Event | Preview | Send | Files | Outcome | Crash
Streamed = Event | Preview | Send | Files  # what a run's handler gets
