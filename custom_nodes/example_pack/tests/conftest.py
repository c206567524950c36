"""Loads example_pack the way Loom does (its own module name, the ComfyUI view), into a fresh registry.

Uses Loom's public pack-test loader, `app.custom_nodes.load_pack_for_test`; a pack's tests need nothing else
of Loom's app.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.custom_nodes import PackReport, load_pack_for_test
from executor import NodeRegistry

PACK_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[NodeRegistry, PackReport]]:
    registry = NodeRegistry()
    report, cleanup = load_pack_for_test(PACK_DIR, tmp_path, registry)
    yield registry, report
    cleanup()


@pytest.fixture
def registry(loaded: tuple[NodeRegistry, PackReport]) -> NodeRegistry:
    return loaded[0]
