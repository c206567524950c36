"""Every `bench/` script still imports: the benches are run by hand, so an engine rename would otherwise
only show when someone next measures (bench/precision.py imported a renamed loader helper)."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__"))
def test_bench_script_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")
