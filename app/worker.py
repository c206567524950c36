"""Runs queued prompts one at a time on a worker thread, off the event loop.

`WorkerBackend` is the small interface the routes use (submit / interrupt / status / free), so a
cluster backend (issue 11) can replace the in-process `Worker` thread.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.events import HubSink, effective_preview_method
from app.hub import Hub
from app.queue_store import QueueItem, QueueStore

__all__ = ["WorkerBackend", "WorkerStatus", "Worker", "HISTORY_EVENTS"]

log = logging.getLogger("loom.worker")

# The events ComfyUI keeps in history `status.messages`.
HISTORY_EVENTS = frozenset({"execution_start", "execution_cached", "execution_success", "execution_error",
                            "execution_interrupted"})


@dataclass(frozen=True)
class WorkerStatus:
    """What the worker is doing: alive, and the prompt it is running (if any)."""

    alive: bool
    running_prompt_id: str | None
    prompts_done: int


class WorkerBackend(Protocol):
    """How the server drives prompt execution; the queue itself lives in the QueueStore."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...
    def submit(self, item: QueueItem) -> None: ...
    def interrupt(self, prompt_id: str | None = None) -> bool: ...
    def status(self) -> WorkerStatus: ...
    def request_free(self, unload_models: bool, free_memory: bool) -> None: ...


class ExecutorLike(Protocol):
    def execute(self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any],
                execute_outputs: list[str], *, sink: Any, interrupt: Any) -> Any: ...


class Worker:
    """One thread that claims prompts from the store, executes them and writes history."""

    def __init__(self, store: QueueStore, hub: Hub, executor: ExecutorLike, interrupt_flag: Any, *,
                 preview_method: str = "none", preview_size: int = 512,
                 free: Callable[[bool, bool], None] | None = None) -> None:
        self.store = store
        self.hub = hub
        self.executor = executor
        self.flag = interrupt_flag
        self.preview_method = preview_method
        self.preview_size = preview_size
        self._free = free
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: str | None = None
        self._free_flags = (False, False)
        self._flags_lock = threading.Lock()
        self._done = 0
        self._last_gc = 0.0
        self._gc_at = -1

    # -- WorkerBackend ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="loom-worker", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._running is not None:
            self.flag.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, item: QueueItem) -> None:
        """The item is already in the store; wake the thread."""
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is `prompt_id`, when given); True if a flag was set."""
        if prompt_id is not None and prompt_id != self._running:
            return False
        self.flag.set()
        return True

    def status(self) -> WorkerStatus:
        alive = self._thread is not None and self._thread.is_alive()
        return WorkerStatus(alive, self._running, self._done)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        with self._flags_lock:
            u, f = self._free_flags
            self._free_flags = (u or unload_models, f or free_memory)
        self._wake.set()

    # -- the thread ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._honour_free()
            try:
                claimed = self.store.claim_next()
            except Exception:
                log.exception("queue store failed; retrying")
                time.sleep(0.5)
                continue
            if claimed is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            item, sensitive = claimed
            try:
                self._run(item, sensitive)
            except Exception:  # never let the worker die: the queue would stall
                log.exception("prompt %s: worker failure", item.prompt_id)
            self._done += 1

    def _honour_free(self) -> None:
        with self._flags_lock:
            unload, free = self._free_flags
            self._free_flags = (False, False)
        if (unload or free) and self._free is not None:
            try:
                self._free(unload, free)
            except Exception:
                log.exception("/free failed")
        now = time.monotonic()
        due = now - self._last_gc > 10.0 and self._done != self._gc_at  # a prompt ran since the last one
        if unload or free or due:
            gc.collect()
            torch = sys.modules.get("torch")  # only if something already imported it
            try:
                if torch is not None and torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception as exc:
                log.debug("cuda cache trim failed: %s", exc)
            self._last_gc, self._gc_at = now, self._done

    def _run(self, item: QueueItem, sensitive: dict[str, Any]) -> None:
        prompt_id = item.prompt_id
        client_id = item.extra_data.get("client_id")
        client_id = client_id if isinstance(client_id, str) else None
        self._running = prompt_id
        self.hub.current_client_id = client_id
        self.flag.clear()
        self.hub.send("status", {"status": {"exec_info": {"queue_remaining": self.store.remaining()}}})
        method = effective_preview_method(self.preview_method, item.extra_data)
        sink = HubSink(self.hub, prompt_id, client_id, method, self.preview_size)
        extra = {**item.extra_data, **sensitive}
        started = time.time()
        try:
            outcome = self.executor.execute(item.prompt, prompt_id, extra, list(item.outputs),
                                            sink=sink, interrupt=self.flag)
            entry, status_str = history_entry(item, outcome)
        except Exception as exc:
            log.exception("prompt %s: executor raised", prompt_id)
            entry, status_str = crash_entry(item, exc, started)
            sink.emit("execution_error", entry["status"]["messages"][-1][1])
        try:
            self.store.finish(item, entry, status_str)
        finally:
            self._running = None
            self.hub.current_client_id = None
            self.hub.send("status", {"status": {"exec_info": {"queue_remaining": self.store.remaining()}}})
            self.hub.send("executing", {"node": None, "prompt_id": prompt_id}, client_id)


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def history_entry(item: QueueItem, outcome: Any) -> tuple[dict[str, Any], str]:
    """ComfyUI's history entry from an ExecutionOutcome (spec 1.5)."""
    status = getattr(outcome, "status", "error")
    status_str = "success" if status == "success" else "error"
    messages = [[ev, data] for ev, data in (getattr(outcome, "messages", None) or []) if ev in HISTORY_EVENTS]
    entry = {
        "prompt": item.to_wire(),
        "outputs": _jsonable(dict(getattr(outcome, "outputs", None) or {})),
        "status": {"status_str": status_str, "completed": status_str == "success",
                   "messages": _jsonable(messages)},
        "meta": _jsonable(dict(getattr(outcome, "meta", None) or {})),
    }
    timings = getattr(outcome, "timings", None)
    if timings:
        entry["timings"] = {str(k): float(v) for k, v in dict(timings).items()}
    return entry, status_str


def crash_entry(item: QueueItem, exc: BaseException, started: float) -> tuple[dict[str, Any], str]:
    """History for an executor that raised instead of reporting (a bug, but the queue must go on)."""
    now_ms = int(time.time() * 1000)
    err: dict[str, Any] = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
           "exception_message": f"{type(exc).__name__}: {exc}",
           "exception_type": f"{type(exc).__module__}.{type(exc).__name__}",
           "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
           "current_inputs": {}, "current_outputs": [], "timestamp": now_ms}
    messages = [["execution_start", {"prompt_id": item.prompt_id, "timestamp": int(started * 1000)}],
                ["execution_error", err]]
    return {"prompt": item.to_wire(), "outputs": {},
            "status": {"status_str": "error", "completed": False, "messages": messages}, "meta": {}}, "error"
