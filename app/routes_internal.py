"""`/internal/...` routes the frontend calls (never `/api`-prefixed, spec 1.11)."""
from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from app.errors import BadRequest, read_json
from app.state import LOG_RING, loom_of

__all__ = ["routes"]


async def logs(request: web.Request) -> web.Response:
    return web.json_response(request.app[LOG_RING].text())


async def logs_raw(request: web.Request) -> web.Response:
    ring = request.app[LOG_RING]
    return web.json_response({"entries": list(ring.entries), "size": {"cols": 80, "rows": 24}})


async def logs_subscribe(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("clientId"), str):
        raise BadRequest("PATCH /internal/logs/subscribe: body must be {\"clientId\": str, \"enabled\": bool}",
                         type_="invalid_json")
    request.app[LOG_RING].subscribe(body["clientId"], bool(body.get("enabled")))
    return web.Response(status=200)


async def folder_paths(request: web.Request) -> web.Response:
    paths = loom_of(request).paths
    if paths is None:
        return web.json_response({})
    return web.json_response({k: paths.get_folder_paths(k) for k in paths.folder_names()})


async def files(request: web.Request) -> web.Response:
    cfg = loom_of(request).config
    kind = request.match_info["directory_type"]
    roots = {"output": cfg.output_dir, "input": cfg.input_dir, "temp": cfg.temp_dir}
    if kind not in roots:
        return web.json_response({"error": "Invalid directory type"}, status=400)
    root = roots[kind]
    if not root.is_dir():
        return web.json_response([])
    entries = [e for e in os.scandir(root) if e.is_file() and not e.name.startswith(".")]
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    return web.json_response([e.name for e in entries])


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/internal/logs", logs), ("GET", "/internal/logs/raw", logs_raw),
        ("PATCH", "/internal/logs/subscribe", logs_subscribe),
        ("GET", "/internal/folder_paths", folder_paths),
        ("GET", "/internal/files/{directory_type}", files),
    ]
