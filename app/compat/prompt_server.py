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
from typing import Any, ClassVar

from aiohttp import web

log = logging.getLogger("loom.custom_nodes")

PROGRESS_TEXT = 3  # binary frame type (spec 2.3)


class BinaryEventTypes:
    """ComfyUI's binary websocket frame ids (`server.BinaryEventTypes`, spec 2.3)."""

    PREVIEW_IMAGE = 1
    UNENCODED_PREVIEW_IMAGE = 2
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4


def _context() -> Any:
    try:
        from executor.context import current
    except ImportError:
        return None
    return current()


class PromptServer:
    """ComfyUI's `server.PromptServer` surface used by packs."""

    instance: ClassVar[PromptServer | None] = None

    def __init__(self, loom: Any, web_app: web.Application | None, hub: Any) -> None:
        self.loom = loom
        self.app = web_app
        self.hub = hub
        self.routes = web.RouteTableDef()
        self.on_prompt_handlers: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self.supports = ["custom_nodes_from_web"]
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.prompt_queue = getattr(loom, "queue", None) if loom is not None else None
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
            return (getattr(ctx, "extra_data", None) or {}).get("client_id")
        if self._client_id is None and self.hub is not None:
            return getattr(self.hub, "current_client_id", None)
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
    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Send `{"type": event, "data": data}` to `sid` (None: every client); safe from any thread."""
        if self.hub is None:
            log.debug("send_sync(%r) with no server running: dropped", event)
            return
        self.hub.send(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
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
        send_binary = getattr(self.hub, "send_bytes", None)
        if send_binary is None:
            log.debug("send_progress_text with no binary-capable hub: dropped")
            return
        send_binary(PROGRESS_TEXT, payload, sid)

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
        self._add_report_routes(app)
        return count

    @staticmethod
    def _add_report_routes(app: web.Application) -> None:
        """Loom's `/loom/custom_nodes` report route, unless the server's table already serves it."""
        from app import routes_custom_nodes

        taken = {getattr(r, "canonical", None) for r in app.router.resources()}
        for method, path, handler in routes_custom_nodes.routes():
            for full in (path, "/api" + path):
                if full not in taken:
                    app.router.add_route(method, full, handler)
