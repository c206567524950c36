"""Discovery and loading of custom node packs (ComfyUI-style) from custom_nodes/ folders."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load_custom_nodes(registry: Any, folders: list[Path], prompt_server: Any = None) -> list[Any]:
    """Import every pack in `folders`, register its nodes on `registry`, and report per pack."""
    # Filled in by the custom nodes work (issue 7).
    return []
