"""`GET /loom/custom_nodes`: what happened to each custom node pack at start-up (JSON).

Rows in the `(method, path, handler)` shape of the other route modules; `server.route_table` serves them
(bare and under `/api`).
"""
from __future__ import annotations

from aiohttp import web

from app.custom_nodes import format_import_times
from app.state import Handler, loom_of

__all__ = ["routes", "PATH", "custom_nodes_report"]

PATH = "/loom/custom_nodes"


async def custom_nodes_report(request: web.Request) -> web.Response:
    """`{"packs": [PackReport...], "summary": {status: count}, "import_times": "<ComfyUI-style table>"}`."""
    reports = list(loom_of(request).custom_node_report)
    packs = [r.to_json() for r in reports]
    if request.query.get("traceback") not in ("1", "true"):
        for pack in packs:
            if pack.get("traceback"):
                pack["traceback"] = pack["traceback"].strip().splitlines()[-1]
    summary: dict[str, int] = {}
    for pack in packs:
        summary[pack["status"]] = summary.get(pack["status"], 0) + 1
    return web.json_response({"packs": packs, "summary": summary, "import_times": format_import_times(reports)})


def routes() -> list[tuple[str, str, Handler]]:
    return [("GET", PATH, custom_nodes_report)]
