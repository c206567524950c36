"""placeholder"""
from __future__ import annotations

NODES: list[type] = []
