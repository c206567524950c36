"""Loads example_pack the way Loom does (its own module name, the ComfyUI view), into a fresh registry."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.compat.prompt_server import PromptServer
from app.custom_nodes import PackReport, load_custom_nodes
from executor import NodeRegistry

PACK_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[NodeRegistry, PackReport]]:
    registry = NodeRegistry()
    server = PromptServer(None, None, None)
    reports = load_custom_nodes(registry, [PACK_DIR.parent], server, base_dir=tmp_path, disable_all=True,
                                whitelist=[PACK_DIR.name], run_prestartup=False)
    report = next(r for r in reports if r.name == PACK_DIR.name)
    yield registry, report
    server.compat_environment.uninstall()
    for name in [n for n in sys.modules if n == "custom_nodes" or n.startswith("custom_nodes.")]:
        del sys.modules[name]
    PromptServer.instance = None


@pytest.fixture
def registry(loaded: tuple[NodeRegistry, PackReport]) -> NodeRegistry:
    return loaded[0]
