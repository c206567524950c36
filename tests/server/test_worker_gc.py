"""The worker's periodic full garbage collection (ComfyUI's "gc every 10 s between prompts") is skipped after
fully cached prompts: a full collection holds the GIL for 200-400 ms with a model loaded, and a cached resubmit
makes no garbage worth it."""
from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from server_helpers import wait_history
from test_real_executor import prompt, real_loom

from app.worker import Worker
from server import create_app


@pytest.fixture()
def worker_full_collections() -> Any:
    """A list that grows by one per full (generation 2) collection started on the worker thread."""
    seen: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info.get("generation") == 2 and threading.current_thread().name == "loom-worker":
            seen.append(time.monotonic())

    gc.callbacks.append(callback)
    yield seen
    gc.callbacks.remove(callback)


async def _until(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return bool(cond())


async def test_cached_resubmit_skips_the_full_collection(aiohttp_client: Any, tmp_path: Path,
                                                         worker_full_collections: list[float]) -> None:
    loom = real_loom(tmp_path)
    try:
        c = await aiohttp_client(create_app(loom, web_root=None))
        worker = loom.backend
        assert isinstance(worker, Worker)

        async def run(body: dict[str, Any]) -> dict[str, Any]:
            resp = await c.post("/prompt", json={"prompt": body})
            assert resp.status == 200, await resp.text()
            entry = await wait_history(c, (await resp.json())["prompt_id"])
            assert entry["status"]["status_str"] == "success"
            assert await _until(lambda: worker.status().running_prompt_id is None)
            return entry

        await run(prompt(3))  # executes nodes: the first collection is due at once
        assert await _until(lambda: len(worker_full_collections) == 1 and worker._gc_at == worker._done == 1)
        worker._last_gc = 0.0  # ten seconds have passed
        await run(prompt(3))  # identical: every node cached
        await asyncio.sleep(0.3)
        worker._wake.set()
        await asyncio.sleep(0.3)
        assert len(worker_full_collections) == 1
        await run(prompt(4))  # new value: nodes execute, the collection runs again
        assert await _until(lambda: len(worker_full_collections) == 2)
    finally:
        loom.close()
