"""`/ws?clientId=`: status on connect, reconnect replaces, feature_flags exchange (spec 2.1)."""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from app.state import loom_of

__all__ = ["routes", "server_features"]

log = logging.getLogger("loom.ws")


def server_features(request: web.Request) -> dict[str, Any]:
    """The server feature flags (GET /features and the websocket reply)."""
    loom = loom_of(request)
    # ComfyUI v0.4x's core flags. `assets` is False as in a ComfyUI started without --enable-assets: Loom serves
    # the read-only asset routes (app/routes_assets.py) but not uploads, tag edits or hashes.
    return {"supports_preview_metadata": True, "max_upload_size": loom.config.max_upload_bytes,
            "extension": {"manager": {"supports_v4": True}}, "node_replacements": True, "assets": False}


async def websocket(request: web.Request) -> web.WebSocketResponse:
    loom = loom_of(request)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)
    sid = request.query.get("clientId") or uuid.uuid4().hex
    hub = loom.hub
    await hub.attach(sid, ws)
    try:
        hub.send("status", {"status": {"exec_info": {"queue_remaining": loom.queue.remaining()}}, "sid": sid},
                 sid)
        node = hub.running_node_for(sid)
        if node is not None:
            hub.send("executing", {"node": node}, sid)
        first = True
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and first:
                first = False
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data")
                    hub.set_client_flags(sid, flags if isinstance(flags, dict) else {})
                    hub.send("feature_flags", server_features(request), sid)
            elif msg.type == WSMsgType.ERROR:
                log.debug("websocket %s closed with %s", sid, ws.exception())
    finally:
        await hub.detach(sid, ws)
    return ws


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/ws", websocket)]
