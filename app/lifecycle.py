"""One prompt's life on the server, shared by every backend (the local `Worker`, the Ray backend, a batch
split across Ray workers):

    run = lifecycle.begin(item)          hub's current client, `status`, the HubSink for the executor's events
    ... the backend runs the prompt, sending events through run.sink ...
    lifecycle.finish(run, outcome)       history written, worker released, `status`, `executing {node: null}`
    lifecycle.fail(run, outcome)         the same for an outcome made here (crash_outcome), after sending
                                         its `execution_error` (the executor never got to send it)
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.events import (
    HubSink,
    crash_error_data,
    effective_preview_method,
    executing_done_data,
    execution_start_data,
    status_data,
)
from app.hub import Hub
from app.queue_store import QueueItem, QueueStore
from executor import ExecutionOutcome

__all__ = ["PromptLifecycle", "PromptRun", "HISTORY_EVENTS", "client_of", "history_entry", "crash_outcome",
           "failed_outcome"]

# The events ComfyUI keeps in history `status.messages`.
HISTORY_EVENTS = frozenset({"execution_start", "execution_cached", "execution_success", "execution_error",
                            "execution_interrupted"})


def client_of(item: QueueItem) -> str | None:
    """The prompt's websocket client id, if it has one."""
    client_id = item.extra_data.get("client_id")
    return client_id if isinstance(client_id, str) else None


@dataclass(frozen=True)
class PromptRun:
    """One prompt being run: its queue item, client, preview method, event sink and start time."""

    item: QueueItem
    client_id: str | None
    preview_method: str
    sink: HubSink
    started: float

    @property
    def prompt_id(self) -> str:
        return self.item.prompt_id


class PromptLifecycle:
    """Begins and finishes prompts on one hub and queue store (see the module docstring)."""

    def __init__(self, hub: Hub, store: QueueStore, preview_method: str, preview_size: int) -> None:
        self.hub = hub
        self.store = store
        self.preview_method = preview_method
        self.preview_size = preview_size

    def prepare(self, item: QueueItem) -> PromptRun:
        """The run record of `item`, without sending anything."""
        client_id = client_of(item)
        method = effective_preview_method(self.preview_method, item.extra_data)
        sink = HubSink(self.hub, item.prompt_id, client_id, method, self.preview_size)
        return PromptRun(item, client_id, method, sink, time.time())

    def begin(self, item: QueueItem) -> PromptRun:
        """Start `item`: it becomes the hub's current client, and `status` goes out."""
        run = self.prepare(item)
        self.hub.current_client_id = run.client_id
        self.send_status()
        return run

    def send_status(self) -> None:
        """`status` with the queue's remaining count, to every client."""
        self.hub.send("status", status_data(self.store.remaining()))

    def finish(self, run: PromptRun, outcome: ExecutionOutcome, release: Callable[[], None] | None = None,
               where: dict[str, Any] | None = None) -> None:
        """Write history from `outcome` (with `where`: the worker and host that ran it, extra fields); then
        (whatever happens) `release` the worker, clear the current client, send `status` and the final
        `executing {node: null}`."""
        entry, status = history_entry(run.item, outcome)
        if where:
            entry.update(_jsonable(where))
        try:
            self.store.finish(run.item, entry, status)
        finally:
            if release is not None:
                release()
            if self.hub.current_client_id == run.client_id:
                self.hub.current_client_id = None
            self.send_status()
            self.hub.send("executing", executing_done_data(run.prompt_id), run.client_id)

    def fail(self, run: PromptRun, outcome: ExecutionOutcome, release: Callable[[], None] | None = None,
             where: dict[str, Any] | None = None) -> None:
        """Finish with an outcome the executor did not report: send its `execution_error` first."""
        if outcome.error is not None:
            run.sink.emit("execution_error", outcome.error)
        self.finish(run, outcome, release, where)


def failed_outcome(prompt_id: str, error: dict[str, Any], started: float) -> ExecutionOutcome:
    """An error outcome for a prompt that failed outside any node (`error`: the execution_error payload)."""
    return ExecutionOutcome(status="error", error=error,
                            messages=[("execution_start", execution_start_data(prompt_id, started)),
                                      ("execution_error", error)])


def crash_outcome(prompt_id: str, exc: BaseException, started: float,
                  traceback: list[str] | None = None) -> ExecutionOutcome:
    """The outcome of an executor that raised instead of reporting (a bug, but the queue must go on)."""
    return failed_outcome(prompt_id, crash_error_data(prompt_id, exc, traceback), started)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def history_entry(item: QueueItem, outcome: ExecutionOutcome) -> tuple[dict[str, Any], str]:
    """ComfyUI's history entry from an ExecutionOutcome (spec 1.5), and its status string."""
    status_str = "success" if outcome.status == "success" else "error"
    messages = [[ev, data] for ev, data in outcome.messages if ev in HISTORY_EVENTS]
    entry: dict[str, Any] = {
        "prompt": item.to_wire(),
        "outputs": _jsonable(dict(outcome.outputs)),
        "status": {"status_str": status_str, "completed": status_str == "success",
                   "messages": _jsonable(messages)},
        "meta": _jsonable(dict(outcome.meta)),
    }
    if outcome.timings:
        entry["timings"] = {str(k): float(v) for k, v in outcome.timings.items()}
    if outcome.reports:  # Loom's own key: ComfyUI clients read outputs / status / meta and ignore it
        entry["loom"] = {"reports": _jsonable(outcome.reports)}
    return entry, status_str
