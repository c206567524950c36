"""`PromptServer.instance.prompt_queue` / `.number`: ComfyUI's PromptQueue calls packs make while a prompt runs (read
the running prompt, put a changed copy back ahead of the queue, as VideoHelperSuite's batch manager does)."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.compat._prompt_queue import NoPromptQueue, PromptQueueView
from app.compat.prompt_server import PromptServer
from app.config import Config
from app.engine_factory import Engine
from app.loom import Loom
from executor import InterruptFlag, NodeRegistry, PromptExecutor, validate_prompt
from server import create_app


class Requeue:
    """Shows what `currently_running` says, and queues the prompt again with `count + 1` until `count` is 2."""

    CATEGORY = "tests"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"count": ("INT", {"default": 0})},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    def run(self, count: int, prompt: dict[str, Any], unique_id: str) -> dict[str, Any]:
        server = PromptServer.instance
        assert server is not None
        running = server.prompt_queue.currently_running
        number, prompt_id, queued, extra, outputs, sensitive = next(iter(running.values()))
        if count < 2:
            again = {k: {**v, "inputs": dict(v["inputs"])} for k, v in queued.items()}
            again[unique_id]["inputs"]["count"] = count + 1
            server.prompt_queue.put((-server.number, str(uuid.uuid4()), again, extra, outputs, sensitive))
            server.number += 1
        return {"ui": {"seen": [len(running), prompt_id, queued[unique_id]["inputs"]["count"], outputs]}}


@pytest.fixture
def loom(tmp_path: Path) -> Iterator[Loom]:
    registry = NodeRegistry()
    registry.register("Requeue", Requeue)
    loom = Loom(config=Config(base_directory=tmp_path, custom_node_dirs=()),
                engine=Engine(registry, PromptExecutor(registry)), validate_fn=validate_prompt,
                interrupt_flag=InterruptFlag())
    yield loom
    loom.close()
    PromptServer.instance = None


async def test_a_node_reads_the_running_prompt_and_requeues_it(aiohttp_client: Any, loom: Loom) -> None:
    client = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False))
    resp = await client.post("/prompt", json={"prompt": {"r": {"class_type": "Requeue", "inputs": {"count": 0}}}})
    assert resp.status == 200
    first = (await resp.json())["prompt_id"]
    deadline = time.monotonic() + 30
    history: dict[str, Any] = {}
    while time.monotonic() < deadline and len(history) < 3:
        history = await (await client.get("/history")).json()
        await asyncio.sleep(0.05)
    assert len(history) == 3
    seen = {pid: entry["outputs"]["r"]["seen"] for pid, entry in history.items()}
    assert all(s[0] == 1 and s[1] == pid and s[3] == ["r"] for pid, s in seen.items())  # itself, alone
    assert sorted(s[2] for s in seen.values()) == [0, 1, 2] and seen[first][2] == 0
    numbers = sorted(entry["prompt"][0] for pid, entry in history.items() if pid != first)
    assert all(n < 0 for n in numbers)  # put ahead of the queue, as the pack asked
    assert loom.queue.counter >= 3


def test_put_names_a_malformed_item(loom: Loom) -> None:
    view = PromptQueueView(loom)
    with pytest.raises(ValueError, match="got tuple of length 2"):
        view.put((1, "id"))
    with pytest.raises(ValueError, match="prompt 'x' must be a dict"):
        view.put((1, "x", [], {}, []))
    assert view.get_current_queue() == ([], []) and view.get_tasks_remaining() == 0


def test_without_a_server_the_queue_names_what_is_missing() -> None:
    server = PromptServer(None, None, None)
    try:
        assert isinstance(server.prompt_queue, NoPromptQueue) and not server.prompt_queue
        with pytest.raises(RuntimeError, match=r"prompt_queue.put: this process has no prompt queue"):
            server.prompt_queue.put((0, "id", {}, {}, []))
        server.number += 2
        assert server.number == 2
    finally:
        PromptServer.instance = None
