"""`server.PromptServer` for custom node packs: ComfyUI's server object as a thin view over Loom's.

Loom's `server.py` does `from app.compat.prompt_server import PromptServer` and builds one with
`PromptServer(loom, web_app, hub)` before custom nodes load, so `server.PromptServer.instance` is there when
packs import. Packs add aiohttp routes to `routes` at import (the server adds the table to its app after
loading, see `add_routes_to`), push websocket messages with `send_sync`, and register prompt rewriters with
`add_on_prompt_handler`. `PromptServer.instance` is a class attribute because that is ComfyUI's API; Loom's
core never reads it.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from aiohttp import web

from app.compat._binary_events import binary_frame
from app.hub import BinaryEventTypes
from executor.context import NodeContext, current

if TYPE_CHECKING:
    from app.compat._environment import CompatEnvironment
    from app.loom import Loom
    from app.queue_store import QueueStore

log = logging.getLogger("loom.custom_nodes")

__all__ = ["PromptServer", "BinaryEventTypes", "PackMessages"]

PROGRESS_TEXT = BinaryEventTypes.TEXT  # binary frame type (spec 2.3)


def _context() -> NodeContext | None:
    return current()


class PackMessages(Protocol):
    """Where pack messages go: the server's `Hub`, or a Ray worker's recorder."""

    current_client_id: str | None

    def send(self, event: str, data: Any, sid: str | None = None) -> None: ...
    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None) -> None: ...


class PromptServer:
    """ComfyUI's `server.PromptServer` surface used by packs."""

    instance: ClassVar[PromptServer | None] = None

    def __init__(self, loom: Loom | None, web_app: web.Application | None, hub: PackMessages | None) -> None:
        self.loom = loom
        self.app = web_app
        self.hub = hub
        self.compat_environment: CompatEnvironment | None = None  # set by load_custom_nodes
        self.routes = web.RouteTableDef()
        self.on_prompt_handlers: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self.supports = ["custom_nodes_from_web"]
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.prompt_queue: QueueStore | None = loom.queue if loom is not None else None
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        PromptServer.instance = self

    # -- who is being served: ComfyUI sets these while a prompt runs; Loom reads the execution context.
    @property
    def client_id(self) -> str | None:
        ctx = _context()
        if ctx is not None:
            client_id = (ctx.extra_data or {}).get("client_id")
            return client_id if isinstance(client_id, str) else None
        if self._client_id is None and self.hub is not None:
            return self.hub.current_client_id
        return self._client_id

    @client_id.setter
    def client_id(self, value: str | None) -> None:
        self._client_id = value

    @property
    def last_node_id(self) -> str | None:
        ctx = _context()
        if ctx is not None:
            return str(ctx.node_id)
        return self._last_node_id

    @last_node_id.setter
    def last_node_id(self, value: str | None) -> None:
        self._last_node_id = value

    # -- messages
    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Send `{"type": event, "data": data}` to `sid` (None: every client); safe from any thread. An integer event
        is one of ComfyUI's binary frames (`BinaryEventTypes`): `UNENCODED_PREVIEW_IMAGE` with `[format, PIL image,
        max_size]` goes out as a `PREVIEW_IMAGE` frame, `[u32 1][u32 1 (JPEG) / 2 (PNG)][image bytes]`;
        `PREVIEW_IMAGE_WITH_METADATA` with `(that list, metadata)` as `[u32 4][u32 len][metadata JSON][image]`; any
        other with bytes as `[u32 event][bytes]`."""
        if self.hub is None:
            log.debug("send_sync(%r) with no server running: dropped", event)
            return
        if isinstance(event, int):
            frame_type, payload = binary_frame(event, data)
            self.hub.send_bytes(frame_type, payload, sid)
            return
        self.hub.send(event, data, sid)

    async def send(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """Async form of `send_sync` (ComfyUI packs await it from route handlers)."""
        self.send_sync(event, data, sid)

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        """ComfyUI alias of `send`."""
        self.send_sync(event, data, sid)

    def send_progress_text(self, text: str | bytes, node_id: str, sid: str | None = None) -> None:
        """Binary TEXT frame (type 3): `[u32 len(node id)][node id][text]` for the node's progress text."""
        raw_text = text.encode() if isinstance(text, str) else bytes(text)
        node = str(node_id).encode()
        payload = struct.pack(">I", len(node)) + node + raw_text
        sid = sid if sid is not None else self.client_id
        if self.hub is None:
            log.debug("send_progress_text with no server running: dropped")
            return
        self.hub.send_bytes(PROGRESS_TEXT, payload, sid)

    # -- prompt rewriting
    def add_on_prompt_handler(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Register `handler(post_json) -> post_json`, run on every POST /prompt body before validation."""
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        """Apply the packs' prompt handlers in order; a failing handler is logged and skipped."""
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                log.exception("custom node on_prompt handler %r failed; ignored", handler)
        return json_data

    # -- routes
    def add_routes_to(self, app: web.Application) -> int:
        """Add the routes packs declared to `app`, each also under `/api`; returns how many were added.

        Routes the server already has win: a pack route with the same method and path is skipped with a
        warning, and a route aiohttp rejects is logged and skipped, so a pack can never stop start-up.
        """
        taken = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
        count = 0
        for route in self.routes:
            try:
                if not isinstance(route, web.RouteDef):
                    app.router.add_routes([route])
                    count += 1
                    continue
                paths = [route.path] if route.path.startswith("/api/") else [route.path, "/api" + route.path]
                for path in paths:
                    if (route.method, path) in taken:
                        log.warning("custom node route %s %s skipped: Loom already serves it", route.method, path)
                        continue
                    app.router.add_route(route.method, path, route.handler, **route.kwargs)
                    taken.add((route.method, path))
                count += 1
            except (RuntimeError, ValueError, TypeError) as exc:
                log.warning("custom node route %r skipped: %s", route, exc)
        return count
