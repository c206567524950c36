"""`PromptServer.instance.prompt_queue`: ComfyUI's `execution.PromptQueue` surface over Loom's queue store.

Packs read the running prompt from it and put prompts back (Kosinkadink/ComfyUI-VideoHelperSuite's
VHS_BatchManager requeues the running workflow once per batch of frames):

* `currently_running`: `{index: (number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive)}`, the
  prompts the worker is running (Loom runs one at a time). `sensitive` is `{}`: Loom hands a prompt's sensitive
  side slot to the worker once and keeps no copy.
* `put(item)`: queue `(number, prompt_id, prompt, extra_data, outputs_to_execute[, sensitive])` as it is (ComfyUI
  does not validate it again either) and wake the worker.
* `get_current_queue()` / `get_current_queue_volatile()`: `(running, pending)` in wire form;
  `get_tasks_remaining()`.

In a process without Loom's server (the headless runner, a Ray worker) there is no queue to put prompts in:
`NoPromptQueue` answers every use with an error saying so.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.queue_store import QueueItem

if TYPE_CHECKING:
    from app.loom import Loom
    from app.queue_store import QueueStore

__all__ = ["PromptQueueView", "NoPromptQueue"]


class PromptQueueView:
    """ComfyUI's `PromptQueue` calls packs make, on a running Loom server."""

    def __init__(self, loom: Loom) -> None:
        self._loom = loom

    @property
    def store(self) -> QueueStore:
        return self._loom.queue

    @property
    def currently_running(self) -> dict[int, tuple[Any, ...]]:
        return {i: (item.number, item.prompt_id, item.prompt, item.extra_data, list(item.outputs), {})
                for i, item in enumerate(self.store.running())}

    def put(self, item: Sequence[Any]) -> None:
        """Queue a prompt given as ComfyUI's queue tuple; raises ValueError naming what is wrong with it."""
        if not isinstance(item, (tuple, list)) or len(item) not in (5, 6):
            size = f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
            raise ValueError("prompt_queue.put: expected (number, prompt_id, prompt, extra_data, outputs_to_execute"
                             f"[, sensitive]), got {type(item).__name__}{size}")
        number, prompt_id, prompt, extra_data, outputs = item[:5]
        sensitive = item[5] if len(item) == 6 else {}
        if not isinstance(prompt, dict):
            raise ValueError(f"prompt_queue.put: prompt {prompt_id!r} must be a dict of nodes, got "
                             f"{type(prompt).__name__}")
        extra = dict(extra_data or {})
        extra.setdefault("create_time", int(time.time() * 1000))
        queued = QueueItem(number, str(prompt_id), prompt, extra, [str(o) for o in outputs])
        self.store.enqueue(queued, dict(sensitive or {}))
        self._loom.backend.submit(queued)
        self._loom.hub.send("status", {"status": {"exec_info": {"queue_remaining": self.store.remaining()}}})

    def get_current_queue(self) -> tuple[list[list[Any]], list[list[Any]]]:
        return [i.to_wire() for i in self.store.running()], [i.to_wire() for i in self.store.pending()]

    def get_current_queue_volatile(self) -> tuple[list[list[Any]], list[list[Any]]]:
        return self.get_current_queue()

    def get_tasks_remaining(self) -> int:
        return self.store.remaining()


class NoPromptQueue:
    """`prompt_queue` where this process serves no queue: any use raises an error naming what is missing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"PromptServer.instance.prompt_queue.{name}: this process has no prompt queue (it runs "
                           "prompts without Loom's server: the headless runner or a Ray worker), so a node cannot "
                           "read or requeue prompts here; run it on Loom's server (`python server.py`)")

    def __bool__(self) -> bool:
        return False
