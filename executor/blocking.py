"""Await a coroutine from synchronous code (validation is synchronous; a pack's validator may be async)."""
from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run_blocking(awaitable: Any) -> Any:
    """Await ``awaitable`` from synchronous code (an ``async def VALIDATE_INPUTS``) and return its result.

    Outside an event loop it runs on a fresh loop; inside one (a server handler) on a fresh loop in a helper
    thread that carries the caller's context, so the caller's loop is never re-entered.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(awaitable))
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def runner() -> None:
        try:
            box["value"] = context.run(asyncio.run, _awaited(awaitable))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="loom-await-validator")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
