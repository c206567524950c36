"""`import server` for packs when Loom's own `server.py` is not importable (headless runner, tests)."""
from __future__ import annotations

import uuid

from aiohttp import web

from app.compat.prompt_server import BinaryEventTypes, PromptServer

# `web` and `uuid` are module attributes of ComfyUI's server that packs use (`server.web`, `server.uuid.uuid4()`)
__all__ = ["PromptServer", "BinaryEventTypes", "web", "uuid"]
