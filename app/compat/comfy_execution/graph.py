"""ComfyUI's `comfy_execution.graph` names packs import (ExecutionBlocker lives here in newer ComfyUI)."""
from __future__ import annotations

from executor.graph_utils import ExecutionBlocker

__all__ = ["ExecutionBlocker"]
