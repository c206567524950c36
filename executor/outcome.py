"""``ExecutionOutcome``: what one prompt run produced (for history and the server)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

Status = Literal["success", "error", "interrupted"]
_STATUSES = ("success", "error", "interrupted")


@dataclass
class ExecutionOutcome:
    """The result of ``PromptExecutor.execute``.

    ``outputs``/``meta`` become history ``outputs``/``meta``; ``messages`` are the prompt-level events
    (start, cached, success / error / interrupted) for history ``status.messages``; ``error`` is the
    ``execution_error`` or ``execution_interrupted`` payload. ``executed`` lists the nodes that ran,
    ``cached`` the nodes whose outputs this run took from the cache (including replayed output nodes); ``reports``
    what nodes recorded with ``NodeContext.report`` (by node, then kind; history's Loom-only ``loom.reports``). Unlike ComfyUI, the stored UI of a cached
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
    reports: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    values: dict[str, list[list[Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and dicts) to send to another process; ``values`` (live node outputs) stay here."""
        return {"status": self.status, "outputs": self.outputs, "meta": self.meta,
                "messages": [[event, data] for event, data in self.messages], "error": self.error,
                "executed": list(self.executed), "cached": list(self.cached), "timings": dict(self.timings),
                "reports": dict(self.reports)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionOutcome:
        """The outcome ``to_dict`` described (``values`` empty); raises ValueError on an unknown status."""
        status = data.get("status")
        if status not in _STATUSES:
            raise ValueError(f"ExecutionOutcome.from_dict: status must be one of {_STATUSES}, got {status!r}")
        return cls(status=cast(Status, status), outputs=dict(data.get("outputs") or {}),
                   meta=dict(data.get("meta") or {}),
                   messages=[(str(event), payload) for event, payload in data.get("messages") or []],
                   error=data.get("error"), executed=list(data.get("executed") or []),
                   cached=list(data.get("cached") or []), timings=dict(data.get("timings") or {}),
                   reports=dict(data.get("reports") or {}))
