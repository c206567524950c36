"""One `comfy_extras.nodes_<topic>` module (this file is executed once under each listed name).

Its names are Loom's registered classes for the node ids ComfyUI defines in that module (also under ComfyUI's
class names where they differ), plus the helper objects packs import from it (see `app/compat/_extras.py`).
"""
from __future__ import annotations

import importlib
from typing import Any

from app.compat._environment import handles_for
from app.compat._extras import EXTRAS_CLASS_NAMES, EXTRAS_HELPERS, EXTRAS_MODULES

_loom = handles_for(__name__)  # this Loom instance's objects
_topic = __name__.rpartition(".")[2]

NODE_CLASS_MAPPINGS: dict[str, type] = {
    node_id: _loom.registry.get(node_id) for node_id in EXTRAS_MODULES[_topic] if node_id in _loom.registry
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    node_id: _loom.registry.display_name_of(node_id) for node_id in NODE_CLASS_MAPPINGS
}


def _helper(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


globals().update(NODE_CLASS_MAPPINGS)
globals().update({name: NODE_CLASS_MAPPINGS[node_id] for name, node_id in EXTRAS_CLASS_NAMES.get(_topic, {}).items()
                  if node_id in NODE_CLASS_MAPPINGS})
globals().update({name: _helper(target) for name, target in EXTRAS_HELPERS.get(_topic, {}).items()})
