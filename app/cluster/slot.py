"""`Slot`: one worker actor and what the server knows of it (state owned by RayBackend, under its lock).

A slot is "starting" from the moment its actor is created until the actor answers `info` (Ray has placed
it on a node and its engine is built), then "ready", and "dead" once Ray reports it (or its node) gone.
Only a ready slot with no running prompt is idle; a starting one never is, however long Ray takes to place it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from app.cluster.files import OutputPlacer
from app.cluster.routing import WorkerView
from app.queue_store import QueueItem

__all__ = ["Slot", "SlotState"]

SlotState = Literal["starting", "ready", "dead"]


@dataclass
class Slot:
    """One worker actor and what the server knows of it."""

    name: str
    actor: Any
    state: SlotState = "starting"
    running: QueueItem | None = None
    done: int = 0
    models: set[str] = field(default_factory=set)
    recent: deque[frozenset[str]] = field(default_factory=lambda: deque(maxlen=1))
    info: dict[str, Any] = field(default_factory=dict)
    placer: OutputPlacer | None = None  # this worker's file names -> the server's (kept across prompts)
    live: dict[str, Any] = field(default_factory=dict)  # the actor's last `stats` answer (cached)
    live_at: float = 0.0  # when `live` arrived (time.time())
    stats_ref: Any = None  # a `stats` call in flight (collected by the health monitor, never waited on)

    @property
    def alive(self) -> bool:
        return self.state != "dead"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def idle(self) -> bool:
        return self.state == "ready" and self.running is None

    def placement(self) -> dict[str, Any]:
        """The extra fields that say where a prompt runs (execution_start, history): worker, host, node."""
        return {"worker": self.name, "host": self.info.get("host"), "node_ip": self.info.get("node_ip")}

    def view(self) -> WorkerView:
        keys = frozenset().union(*self.recent) if self.recent else frozenset()
        return WorkerView(self.name, self.idle, frozenset(self.models), keys, self.done)
