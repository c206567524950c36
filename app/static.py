"""The web root: `GET /` (editor index.html or a placeholder) and its static files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from app.config import Config
from app.state import WEB_ROOT

__all__ = ["find_web_root", "index", "PLACEHOLDER", "NO_CACHE"]

NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}

PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>Loom</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>Loom is running</h1>
<p>The browser editor is not built yet (no <code>web/dist/index.html</code>). The API is up: try
<a href="api/object_info">/api/object_info</a>, <a href="api/queue">/api/queue</a>,
<a href="api/history">/api/history</a>, <a href="openapi.json">/openapi.json</a>.</p>
</body></html>"""


def find_web_root(config: Config, repo_root: Path) -> Path | None:
    """`--front-end-root`, else `web/dist`, else `web` (whichever has an index.html), else None."""
    candidates = [config.front_end_root] if config.front_end_root else []
    candidates += [repo_root / "web" / "dist", repo_root / "web"]
    for c in candidates:
        if c is not None and (c / "index.html").is_file():
            return c.resolve()
    return None


async def index(request: web.Request) -> web.StreamResponse:
    root: Any = request.app[WEB_ROOT]
    if root is None:
        return web.Response(text=PLACEHOLDER, content_type="text/html", headers=NO_CACHE)
    return web.FileResponse(Path(root) / "index.html", headers=NO_CACHE)
