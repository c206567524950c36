"""Async node calls: coroutines run as tasks on a private event loop beside the other nodes (spec 5.2)."""
from __future__ import annotations

import asyncio
from typing import Any

from executor.errors import ExecutionInterrupted
from executor.events import InterruptFlag
from executor.runlist import ExecutionList

Waiting = tuple[list[Any], dict[str, list[Any]], float]


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class AsyncCalls:
    """The tasks of one prompt run and the nodes held until their tasks finish."""

    def __init__(self, runlist: ExecutionList, interrupt: InterruptFlag) -> None:
        self._runlist = runlist
        self._interrupt = interrupt
        self._loop: asyncio.AbstractEventLoop | None = None
        self.waiting: dict[str, Waiting] = {}

    def start(self, awaitable: Any) -> asyncio.Task[Any]:
        """Schedule ``awaitable`` as a task (it copies the current context, so ``current()`` works)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.create_task(_awaited(awaitable))

    def has_running(self, returns: list[Any]) -> bool:
        """Whether some of ``returns`` are tasks still running (after giving them one step)."""
        if not any(isinstance(r, asyncio.Future) for r in returns):
            return False
        self.poll()
        return any(isinstance(r, asyncio.Future) and not r.done() for r in returns)

    def hold(self, node_id: str, returns: list[Any], inputs: dict[str, list[Any]], started: float) -> None:
        """Park ``node_id`` until its tasks finish."""
        self.waiting[node_id] = (returns, inputs, started)
        self._runlist.hold(node_id)

    def resume(self, node_id: str) -> tuple[list[Any], dict[str, list[Any]], float]:
        """Return the finished results (raising a task's exception), inputs and start time of ``node_id``."""
        returns, inputs, started = self.waiting.pop(node_id)
        return results_of(returns), inputs, started

    def _release_finished(self) -> None:
        for node_id, (returns, _, _) in self.waiting.items():
            if node_id in self._runlist.held and all(r.done() for r in returns if isinstance(r, asyncio.Future)):
                self._runlist.release(node_id)

    def poll(self) -> None:
        """Let running tasks make progress without blocking; release nodes whose tasks are done."""
        if self._loop is not None:
            self._loop.run_until_complete(asyncio.sleep(0))
        self._release_finished()

    def wait(self) -> None:
        """Nothing else can run: wait for a task to finish, checking the interrupt flag every 50 ms."""
        tasks = [r for returns, _, _ in self.waiting.values() for r in returns
                 if isinstance(r, asyncio.Future) and not r.done()]
        if tasks and self._loop is not None:
            self._loop.run_until_complete(asyncio.wait(tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED))
        if self._interrupt.is_set():
            self._interrupt.clear()
            raise ExecutionInterrupted("Processing interrupted while async nodes were running")
        self._release_finished()

    def finish(self, returns: list[Any]) -> list[Any]:
        """Wait until the tasks among ``returns`` are done (other tasks keep running) and return the results."""
        tasks = [r for r in returns if isinstance(r, asyncio.Future)]
        while self._loop is not None and any(not t.done() for t in tasks):
            self._loop.run_until_complete(asyncio.wait(tasks, timeout=0.05))
            if self._interrupt.is_set():
                self._interrupt.clear()
                raise ExecutionInterrupted("Processing interrupted while check_lazy_status was running")
        return results_of(returns)

    def close(self) -> None:
        """Cancel what still runs and close the loop."""
        if self._loop is None:
            return
        pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()
        self._loop = None


def results_of(returns: list[Any]) -> list[Any]:
    """Replace finished tasks by their results (raising their exceptions)."""
    return [r.result() if isinstance(r, asyncio.Future) else r for r in returns]
