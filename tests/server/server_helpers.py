"""Helpers shared by the server tests."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient


def graph(value: int = 2, sleep: float | None = None, fail: bool = False) -> dict[str, Any]:
    """Const(value) -> [Sleep] -> [Fail] -> Show."""
    g: dict[str, Any] = {"1": {"class_type": "Const", "inputs": {"value": value}}}
    src = ["1", 0]
    if sleep is not None:
        g["2"] = {"class_type": "Sleep", "inputs": {"value": src, "seconds": sleep}}
        src = ["2", 0]
    if fail:
        g["3"] = {"class_type": "Fail", "inputs": {"value": src}}
        src = ["3", 0]
    g["9"] = {"class_type": "Show", "inputs": {"value": src}}
    return g


async def wait_history(client: TestClient, prompt_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll /history/{id} until the entry exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await client.get(f"/history/{prompt_id}")
        data = await resp.json()
        if prompt_id in data:
            return data[prompt_id]
        await asyncio.sleep(0.02)
    raise AssertionError(f"prompt {prompt_id} not in history after {timeout}s")


async def ws_until(ws: Any, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0
                   ) -> list[dict[str, Any]]:
    """Collect JSON frames until `pred(frame)`; binary frames are returned as {"binary": bytes}."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; got {[f.get('type') for f in frames]}")
        msg = await ws.receive(timeout=left)
        frame = {"binary": msg.data} if isinstance(msg.data, bytes) else json.loads(msg.data)
        frames.append(frame)
        if pred(frame):
            return frames

