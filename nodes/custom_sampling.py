"""Custom sampling nodes (ComfyUI `comfy_extras/nodes_custom_sampler.py` names): being written."""
from __future__ import annotations

NODES: list[type] = []
