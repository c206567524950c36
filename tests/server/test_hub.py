"""Hub on its own: back-pressure for a socket that stops reading."""
from __future__ import annotations

import asyncio
from typing import Any

from app import hub as hub_mod
from app.hub import Hub


class StuckSocket:
    """A websocket whose peer never reads: every send blocks."""

    def __init__(self) -> None:
        self.closed = False
        self.sent = 0
        self._never = asyncio.Event()

    async def send_str(self, data: str) -> None:
        self.sent += 1
        await self._never.wait()

    async def send_bytes(self, data: bytes) -> None:
        self.sent += 1
        await self._never.wait()

    async def close(self) -> None:
        self.closed = True
        self._never.set()


async def _drain() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slow_socket_loses_previews_then_is_closed(monkeypatch: Any) -> None:
    monkeypatch.setattr(hub_mod, "SKIP_PREVIEWS", 5)
    monkeypatch.setattr(hub_mod, "MAX_BACKLOG", 20)
    hub = Hub()
    hub.bind(asyncio.get_running_loop())
    ws: Any = StuckSocket()
    await hub.attach("slow", ws)
    for i in range(10):
        hub.send("tick", {"i": i}, "slow")
    await _drain()
    client = hub._clients["slow"]
    queued = client.queue.qsize()
    hub.send_bytes(1, b"preview", "slow")  # over SKIP_PREVIEWS: dropped
    await _drain()
    assert client.queue.qsize() == queued
    for i in range(30):
        hub.send("tick", {"i": i}, "slow")
    await _drain()
    assert "slow" not in hub.sids() and ws.closed
    hub.send("tick", {}, "slow")  # sending to a dropped sid is a no-op
    await hub.close()


async def test_send_before_bind_is_dropped() -> None:
    hub = Hub()
    hub.send("status", {})  # no loop yet: nothing happens, nothing raises
    assert hub.sids() == []
