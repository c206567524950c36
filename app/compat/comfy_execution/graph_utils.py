"""ComfyUI's `comfy_execution.graph_utils`: the executor's own GraphBuilder / ExecutionBlocker / is_link."""
from __future__ import annotations

from executor.graph_utils import ExecutionBlocker, GraphBuilder, GraphNode, is_link

__all__ = ["GraphBuilder", "GraphNode", "ExecutionBlocker", "is_link"]
