"""`GET /loom/custom_nodes`: what happened to each custom node pack at start-up (JSON).

Rows in the `(method, path, handler)` shape of the other route modules; `PromptServer.add_routes_to`
adds them (bare and under `/api`) unless the server's own route table already has the path.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from app.state import loom_of

__all__ = ["routes", "PATH", "custom_nodes_report"]

PATH = "/loom/custom_nodes"


def _as_json(report: Any) -> dict[str, Any]:
    to_json = getattr(report, "to_json", None)
    return dict(to_json()) if callable(to_json) else dict(report)


async def custom_nodes_report(request: web.Request) -> web.Response:
    """`{"packs": [PackReport...], "summary": {status: count}, "import_times": "<ComfyUI-style table>"}`."""
    from app.custom_nodes import format_import_times

    reports = list(loom_of(request).custom_node_report)
    packs = [_as_json(r) for r in reports]
    if request.query.get("traceback") not in ("1", "true"):
        for pack in packs:
            if pack.get("traceback"):
                pack["traceback"] = pack["traceback"].strip().splitlines()[-1]
    summary: dict[str, int] = {}
    for pack in packs:
        summary[pack.get("status", "unknown")] = summary.get(pack.get("status", "unknown"), 0) + 1
    table = format_import_times(reports) if all(hasattr(r, "seconds") for r in reports) else ""
    return web.json_response({"packs": packs, "summary": summary, "import_times": table})


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", PATH, custom_nodes_report)]
