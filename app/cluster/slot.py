"""`Slot`: one worker actor and what the server knows of it (state owned by RayBackend, under its lock)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from app.cluster.files import OutputPlacer
from app.cluster.routing import WorkerView
from app.queue_store import QueueItem

__all__ = ["Slot"]


@dataclass
class Slot:
    """One worker actor and what the server knows of it."""

    name: str
    actor: Any
    alive: bool = True
    running: QueueItem | None = None
    done: int = 0
    models: set[str] = field(default_factory=set)
    recent: deque[frozenset[str]] = field(default_factory=lambda: deque(maxlen=1))
    info: dict[str, Any] = field(default_factory=dict)
    placer: OutputPlacer | None = None  # this worker's file names -> the server's (kept across prompts)

    def view(self) -> WorkerView:
        keys = frozenset().union(*self.recent) if self.recent else frozenset()
        return WorkerView(self.name, self.alive and self.running is None, frozenset(self.models), keys, self.done)
