"""History entries for prompts whose Ray workers died past the retry limit."""
from __future__ import annotations

import time
from typing import Any

from app.queue_store import QueueItem
from app.worker import crash_entry

__all__ = ["client_of", "worker_died_entry"]


def client_of(item: QueueItem) -> str | None:
    """The prompt's websocket client id, if it has one."""
    client_id = item.extra_data.get("client_id")
    return client_id if isinstance(client_id, str) else None


def worker_died_entry(item: QueueItem, worker: str, where: str, runs: int, exc: BaseException) -> dict[str, Any]:
    """An error history entry whose `execution_error` names the worker that died and says what to check."""
    msg = (f"Ray worker {where} died while running this prompt ({type(exc).__name__}); it was run "
           f"{runs} times on {runs} workers and every one died. Check that worker's logs (ray logs, "
           f"`dmesg` for the OOM killer) and the prompt's memory needs, then queue it again.")
    entry = crash_entry(item, RuntimeError(msg), time.time())[0]
    entry["status"]["messages"][-1][1].update({"exception_message": msg, "exception_type": "WorkerDied",
                                               "traceback": [], "worker": worker})
    return entry
