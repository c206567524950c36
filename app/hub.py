"""Websocket fan-out: a thread-safe `send(event, data, sid=None)` for the worker, routes and custom nodes.

Every message goes through the event loop with `call_soon_threadsafe`, so messages keep the order in which
they were sent from any one thread. Each socket has its own queue and writer task: a slow client never
blocks the others or the worker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Hub", "BinaryEventTypes"]

log = logging.getLogger("loom.ws")


# Back-pressure for one slow socket: past SKIP_PREVIEWS queued frames its previews are dropped, past
# MAX_BACKLOG it is closed (the browser reconnects and gets a fresh status).
SKIP_PREVIEWS = 200
MAX_BACKLOG = 5000


class BinaryEventTypes:
    """ComfyUI's binary frame ids (spec 2.3)."""

    PREVIEW_IMAGE = 1
    UNENCODED_PREVIEW_IMAGE = 2
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4


@dataclass
class _Client:
    sid: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | bytes | None] = field(default_factory=asyncio.Queue)
    flags: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class Hub:
    """Connected websocket clients by sid, and thread-safe sending to one of them or to all."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()
        self._running: tuple[str | None, str] | None = None  # (sid, node) of the executing node
        self.current_client_id: str | None = None  # the running prompt's client_id (PromptServer.client_id)

    # -- lifecycle -------------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop; messages sent before are dropped (nobody is connected)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.ws.close()
        self._clients.clear()
        self._loop = None

    def sids(self) -> list[str]:
        return list(self._clients)

    def client_flags(self, sid: str) -> dict[str, Any]:
        c = self._clients.get(sid)
        return dict(c.flags) if c else {}

    def set_client_flags(self, sid: str, flags: dict[str, Any]) -> None:
        c = self._clients.get(sid)
        if c is not None:
            c.flags = dict(flags)

    async def attach(self, sid: str, ws: web.WebSocketResponse) -> None:
        """Register a socket under `sid`, closing any older socket with the same sid (reconnect)."""
        old = self._clients.pop(sid, None)
        if old is not None:
            await self._drop(old)
        client = _Client(sid, ws)
        client.task = asyncio.get_running_loop().create_task(self._writer(client))
        self._clients[sid] = client

    async def detach(self, sid: str, ws: web.WebSocketResponse) -> None:
        client = self._clients.get(sid)
        if client is not None and client.ws is ws:
            del self._clients[sid]
            await self._drop(client)

    async def _drop(self, client: _Client) -> None:
        client.queue.put_nowait(None)
        if not client.ws.closed:
            await client.ws.close()

    async def _writer(self, client: _Client) -> None:
        while True:
            msg = await client.queue.get()
            if msg is None or client.ws.closed:
                return
            try:
                if isinstance(msg, bytes):
                    await client.ws.send_bytes(msg)
                else:
                    await client.ws.send_str(msg)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("dropping websocket %s: %s", client.sid, exc)
                return

    def running_node_for(self, sid: str) -> str | None:
        """The node id being executed for `sid`'s prompt (replayed to a reconnecting client)."""
        running = self._running
        return running[1] if running and running[0] == sid else None

    # -- sending (any thread) --------------------------------------------------------------------------
    def send(self, event: str, data: Any, sid: str | None = None) -> None:
        """Queue `{"type": event, "data": data}` for `sid`, or for every client when sid is None."""
        if event == "executing" and isinstance(data, dict):
            node = data.get("node")
            self._running = (sid, str(node)) if node is not None else None
        self._post(json.dumps({"type": event, "data": data}), sid, None)

    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None) -> None:
        """Queue a binary frame `[u32 event_type][payload]`."""
        self._post(struct.pack(">I", event_type) + payload, sid, None)

    def send_preview(self, image: bytes, image_type: str, metadata: dict[str, Any], sid: str | None) -> None:
        """Type 4 (with metadata) to clients that advertised `supports_preview_metadata`, else type 1."""
        fmt = 2 if image_type == "image/png" else 1
        legacy = struct.pack(">II", BinaryEventTypes.PREVIEW_IMAGE, fmt) + image
        meta = json.dumps({**metadata, "image_type": image_type}).encode()
        rich = struct.pack(">II", BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + image
        self._post(legacy, sid, rich)

    def _post(self, msg: str | bytes, sid: str | None, rich: bytes | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._dispatch, msg, sid, rich)  # no self-pipe wake-up needed
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, msg, sid, rich)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _dispatch(self, msg: str | bytes, sid: str | None, rich: bytes | None) -> None:
        targets = list(self._clients.values()) if sid is None else (
            [self._clients[sid]] if sid in self._clients else [])
        for client in targets:
            backlog = client.queue.qsize()
            if backlog > MAX_BACKLOG:
                log.warning("websocket %s is %d frames behind: closing it", client.sid, backlog)
                self._clients.pop(client.sid, None)
                asyncio.get_running_loop().create_task(self._drop(client))
                continue
            if isinstance(msg, bytes) and backlog > SKIP_PREVIEWS:
                continue
            if rich is not None and client.flags.get("supports_preview_metadata"):
                client.queue.put_nowait(rich)
            else:
                client.queue.put_nowait(msg)
