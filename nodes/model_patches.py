"""Model-patching nodes (RescaleCFG, DifferentialDiffusion, ...): being written."""
from __future__ import annotations

NODES: list[type] = []
