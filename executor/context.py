"""The execution context: what a running node can reach (progress, interrupt, its own ids).

While a node's FUNCTION runs, ``current()`` returns its ``NodeContext`` (a ``contextvars.ContextVar`` set
by the executor around each call), so progress bars and interrupt checks need no globals.
"""
from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from executor.errors import ExecutionInterrupted
from executor.events import InterruptFlag


class ProgressReporter(Protocol):
    """Where ``NodeContext.progress`` goes (implemented by the executor's run state)."""

    def report_progress(self, ctx: NodeContext, value: float, total: float, preview: Any) -> None:
        """Emit ``progress`` / ``progress_state`` (and a preview) for ``ctx``'s node."""


class NodeContext:
    """The context of one node call: ids, extra data, progress and interrupt."""

    __slots__ = ("prompt_id", "node_id", "display_node_id", "extra_data", "call_index", "parent_node_id",
                 "real_node_id", "reports", "_reporter", "_interrupt", "_graph_index")

    def __init__(self, *, prompt_id: str, node_id: str, display_node_id: str, extra_data: Mapping[str, Any],
                 reporter: ProgressReporter | None = None, interrupt: InterruptFlag | None = None,
                 call_index: int = 0, parent_node_id: str | None = None,
                 real_node_id: str | None = None, reports: dict[str, list[Any]] | None = None) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.display_node_id = display_node_id
        self.extra_data = extra_data
        self.call_index = call_index
        self.parent_node_id = parent_node_id
        self.real_node_id = real_node_id if real_node_id is not None else node_id
        # what the node reported about its run, by kind (history's Loom-only ``loom.reports``)
        self.reports: dict[str, list[Any]] = {} if reports is None else reports
        self._reporter = reporter
        self._interrupt = interrupt
        self._graph_index = 0

    def progress(self, value: float, total: float, preview: Any = None) -> None:
        """Report progress ``value`` of ``total`` (emits ``progress`` + ``progress_state``); checks interrupt."""
        self.check_interrupt()
        if self._reporter is not None:
            self._reporter.report_progress(self, value, total, preview)

    def report(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Record ``payload`` (JSON-able) under ``kind`` for the history entry (not sent as a node output)."""
        self.reports.setdefault(kind, []).append(dict(payload))

    def check_interrupt(self) -> None:
        """Raise ``ExecutionInterrupted`` (and clear the flag) if an interrupt was requested."""
        if self._interrupt is not None and self._interrupt.is_set():
            self._interrupt.clear()
            raise ExecutionInterrupted(f"Processing interrupted while node #{self.node_id} was running")

    def next_graph_index(self) -> int:
        """Return a fresh index for a ``GraphBuilder`` created in this call (deterministic ids)."""
        index = self._graph_index
        self._graph_index += 1
        return index


_CURRENT: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("loom_node_context", default=None)


def current() -> NodeContext | None:
    """Return the context of the node call running in this thread, or None outside execution."""
    return _CURRENT.get()


def enter(ctx: NodeContext) -> contextvars.Token[NodeContext | None]:
    """Make ``ctx`` current; pass the returned token to ``leave`` (the executor's fast path)."""
    return _CURRENT.set(ctx)


def leave(token: contextvars.Token[NodeContext | None]) -> None:
    """Restore the context that was current before ``enter``."""
    _CURRENT.reset(token)


@contextmanager
def use(ctx: NodeContext) -> Iterator[NodeContext]:
    """Make ``ctx`` the current context for the duration of the ``with`` block."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
