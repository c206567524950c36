"""What a sampling run reports about itself (for the prompt's history), without knowing who listens.

Engine code calls ``report(kind, payload)``; a caller that wants the reports wraps the engine call in
``reporting_to(sink)`` (the built-in sampler nodes pass them to the running node's context, which puts them in
the history entry under Loom's own key). Outside such a block a report goes nowhere. The sink is a context
variable, so concurrent runs in other threads / tasks do not see each other's reports.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypedDict

__all__ = ["AdapterRecord", "Sink", "report", "reporting_to"]

Sink = Callable[[str, Mapping[str, Any]], None]
_SINK: ContextVar[Sink | None] = ContextVar("loom_engine_report_sink", default=None)


class AdapterRecord(TypedDict):
    """One ControlNet / T2I-Adapter of one sampling run (report kind ``"adapters"``).

    steps: indices into the run's sigma schedule at which the control acted; sigmas: every sigma it was called
    at (multi-stage samplers call between schedule steps); model_calls: how many model calls it acted in;
    previous: the file of the control it is chained onto (its outputs are added to that one's), if any."""

    file: str
    kind: str
    family: str
    strength: float
    start_percent: float
    end_percent: float
    sigma_start: float
    sigma_end: float
    steps: list[int]
    sigmas: list[float]
    model_calls: int
    previous: str | None


def report(kind: str, payload: Mapping[str, Any]) -> None:
    """Hand ``payload`` to the current sink (a no-op when nobody listens)."""
    sink = _SINK.get()
    if sink is not None:
        sink(kind, payload)


@contextmanager
def reporting_to(sink: Sink | None) -> Iterator[None]:
    """Send the reports made inside the block to ``sink`` (None: drop them)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)
