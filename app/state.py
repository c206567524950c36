"""Typed application state keys shared by server.py and the route modules."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from app.compat.prompt_server import PromptServer
    from app.logbuffer import LogRing
    from app.loom import Loom

__all__ = ["LOOM", "WEB_ROOT", "PROMPT_SERVER", "LOG_RING", "EXTRA_ROUTES", "Handler", "loom_of"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOOM: web.AppKey[Loom] = web.AppKey("loom")
WEB_ROOT: web.AppKey[Path | None] = web.AppKey("web_root")
PROMPT_SERVER: web.AppKey[PromptServer] = web.AppKey("prompt_server")
LOG_RING: web.AppKey[LogRing] = web.AppKey("log_ring")
# (method, path, summary) of routes added by custom nodes after start-up (documented in /openapi.json)
EXTRA_ROUTES: web.AppKey[list[tuple[str, str, str]]] = web.AppKey("extra_routes")


def loom_of(request: web.Request) -> Loom:
    """The Loom instance serving this request."""
    return request.config_dict[LOOM]
