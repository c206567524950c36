"""``ExecutionOutcome``: what one prompt run produced (for history and the server)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["success", "error", "interrupted"]


@dataclass
class ExecutionOutcome:
    """The result of ``PromptExecutor.execute``.

    ``outputs``/``meta`` become history ``outputs``/``meta``; ``messages`` are the prompt-level events
    (start, cached, success / error / interrupted) for history ``status.messages``; ``error`` is the
    ``execution_error`` or ``execution_interrupted`` payload. ``executed`` lists the nodes that ran,
    ``cached`` the nodes whose outputs this run took from the cache (including replayed output nodes). Unlike ComfyUI, the stored UI of a cached
    output node is in ``outputs`` whether or not the prompt had a ``client_id``.
    """

    status: Status
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    values: dict[str, list[list[Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.status == "success"
