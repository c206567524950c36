"""The pack suite (bench/packs.py) as a test: every pinned pack whose source is on this machine is loaded by a
real Loom server and must be as pinned: fully working, or failing for exactly its recorded Loom gap.

Pack sources are not in the repository: they come from `$LOOM_PACKS_CACHE` or the git mirrors under
`$LOOM_PACKS_MIRROR` (see bench/pack_sources.py). Without them the tests skip, saying so.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_module(name: str, file: str) -> Any:
    # imported by path: bench/ on sys.path would let bench/server.py shadow Loom's server.py
    spec = importlib.util.spec_from_file_location(name, BENCH / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


suite = _bench_module("loom_pack_suite", "packs.py")
PINS = suite.load_manifest()
PackResult = suite.PackResult


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PackResult]:
    if not any(suite.source_of(pin) for pin in PINS):
        pytest.skip("no pinned pack source on this machine: set LOOM_PACKS_CACHE or LOOM_PACKS_MIRROR "
                    "(see bench/pack_sources.py)")
    found = suite.run_suite(PINS, tmp_path_factory.mktemp("packs"), server_args=[])
    print(suite.format_table(found))
    return {r.name: r for r in found}


@pytest.mark.parametrize("pin", PINS, ids=[p.name for p in PINS])
def test_pack_is_as_pinned(pin, results: dict[str, PackResult]) -> None:
    result = results[pin.name]
    if result.status == "skipped":
        pytest.skip(f"{pin.name}: {result.reason}")
    if pin.gap:
        assert result.as_expected, (f"{pin.name} no longer fails with its pinned gap {pin.gap!r}: "
                                    f"status {result.status}, {result.reason} {result.smoke_failures}; "
                                    f"if Loom fixed it, remove the gap from bench/pack_suite/packs.json")
        return
    assert result.status == "loaded", f"{pin.name}: {result.status}: {result.reason} {result.refused}"
    assert result.smoke_failures == [] and result.smoke_passed == result.smoke_total
    assert result.nodes_loaded == result.nodes_declared
    assert result.js_served == result.js_total


def test_manifest_pins_commits_and_checkable_smokes() -> None:
    assert len(PINS) >= 25 and len({p.name for p in PINS}) == len(PINS)
    for pin in PINS:
        assert len(pin.commit) == 40 and int(pin.commit, 16) >= 0, pin.name
        for smoke in pin.smoke:
            assert smoke["graph"]["probe"]["class_type"] in ("LoomProbeText", "LoomProbeShape"), smoke["name"]
            assert set(smoke["expect"]) & {"text", "contains", "regex"}, smoke["name"]


def test_smoke_comparison_and_editor_defaults() -> None:
    smoke = {"name": "s", "expect": {"text": "7"}}
    assert suite._compare(smoke, "7") is None and "expected '7'" in str(suite._compare(smoke, "8"))
    assert "no text" in str(suite._compare(smoke, None))
    info = {"N": {"input": {"required": {"a": ["INT", {"default": 3}], "b": [["x", "y"]], "img": ["IMAGE"]},
                            "optional": {"c": ["STRING", {"default": "z"}]}}}}
    graph = suite.with_defaults({"1": {"class_type": "N", "inputs": {"a": 5}}}, info)
    assert graph["1"]["inputs"] == {"a": 5, "b": "x", "c": "z"}
