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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.hub import Hub
from app.lifecycle import PromptLifecycle, crash_outcome
from app.queue_store import QueueItem, QueueStore

if TYPE_CHECKING:
    from app.engine_factory import ExecutorLike
    from executor import InterruptFlag

__all__ = ["WorkerBackend", "WorkerStatus", "Worker"]

log = logging.getLogger("loom.worker")


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


class Worker:
    """One thread that claims prompts from the store, executes them and writes history."""

    def __init__(self, store: QueueStore, hub: Hub, executor: ExecutorLike, interrupt_flag: InterruptFlag, *,
                 preview_method: str = "none", preview_size: int = 512,
                 free: Callable[[bool, bool], None] | None = None) -> None:
        self.store = store
        self.hub = hub
        self.executor = executor
        self.flag = interrupt_flag
        self.preview_method = preview_method
        self.preview_size = preview_size
        self.lifecycle = PromptLifecycle(hub, store, preview_method, preview_size)
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
        self._running = item.prompt_id
        self.flag.clear()
        run = self.lifecycle.begin(item)
        extra = {**item.extra_data, **sensitive}
        try:
            outcome = self.executor.execute(item.prompt, item.prompt_id, extra, list(item.outputs),
                                            sink=run.sink, interrupt=self.flag)
        except Exception as exc:
            log.exception("prompt %s: executor raised", item.prompt_id)
            self.lifecycle.fail(run, crash_outcome(item.prompt_id, exc, run.started), self._release)
        else:
            self.lifecycle.finish(run, outcome, self._release)

    def _release(self) -> None:
        self._running = None
