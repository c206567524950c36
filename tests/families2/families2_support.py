"""Paths and the comparison rule shared by the families2 tests (a uniquely named module: ``conftest`` is
ambiguous when several test folders are collected together)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FAM2 = FIX / "families2"
GOLDEN2 = FAM2 / "golden"


def rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (the fixtures' comparison rule)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
