"""Static trees: `/` (editor), `/extensions/<pack>/...` (custom node web directories), web root files."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from app.errors import NotFound
from app.loom import Loom
from app.routes_misc import web_directories
from app.safe_paths import confine
from app.state import WEB_ROOT
from app.static import index

__all__ = ["add_static_routes", "STATIC_ROUTES"]


async def pack_file(request: web.Request) -> web.StreamResponse:
    folder = web_directories(request).get(request.match_info["pack"])
    rel = request.match_info["path"]
    if folder is None:
        return await web_file(request)
    path = confine(folder, rel, what="extension file")
    if not path.is_file():
        raise NotFound(f"extension file {rel!r} not found", type_="file_not_found")
    return web.FileResponse(path)


async def web_file(request: web.Request) -> web.StreamResponse:
    root = request.app[WEB_ROOT]
    rel = request.match_info.get("path") or request.path.lstrip("/")
    if root is None:
        raise NotFound(f"{request.path} not found (no editor build)", type_="file_not_found")
    path = confine(Path(root), request.path.lstrip("/") if "pack" in request.match_info else rel,
                   what="static file")
    if not path.is_file():
        raise NotFound(f"{request.path} not found", type_="file_not_found")
    return web.FileResponse(path)


STATIC_ROUTES = [("GET", "/", index), ("GET", "/extensions/{pack}/{path:.+}", pack_file),
                 ("GET", "/{path:.+}", web_file)]


def add_static_routes(app: web.Application, loom: Loom) -> None:
    """Registered last so API routes win; every file is confined to its folder."""
    for method, path, handler in STATIC_ROUTES:
        app.router.add_route(method, path, handler)
