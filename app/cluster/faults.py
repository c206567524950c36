"""The outcome of a prompt whose Ray workers died past the retry limit."""
from __future__ import annotations

import time

from app.events import execution_error_data
from app.lifecycle import failed_outcome
from executor import ExecutionOutcome

__all__ = ["worker_died_outcome"]


def worker_died_outcome(prompt_id: str, worker: str, where: str, runs: int, exc: BaseException) -> ExecutionOutcome:
    """An error outcome whose `execution_error` names the worker that died and says what to check."""
    msg = (f"Ray worker {where} died while running this prompt ({type(exc).__name__}); it was run "
           f"{runs} times on {runs} workers and every one died. Check that worker's logs (ray logs, "
           f"`dmesg` for the OOM killer) and the prompt's memory needs, then queue it again.")
    error = execution_error_data(prompt_id, msg, "WorkerDied", [], worker=worker)
    return failed_outcome(prompt_id, error, time.time())
