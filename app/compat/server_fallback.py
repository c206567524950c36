"""`import server` for packs when Loom's own `server.py` is not importable (headless runner, tests)."""
from __future__ import annotations

from app.compat.prompt_server import BinaryEventTypes, PromptServer

__all__ = ["PromptServer", "BinaryEventTypes"]
