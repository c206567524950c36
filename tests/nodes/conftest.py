"""Fixtures for the built-in node tests: a tmp Loom base dir, services and a bound registry."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.paths import ModelPaths
from nodes.services import NodeServices


@pytest.fixture()
def paths(tmp_path: Path) -> ModelPaths:
    p = ModelPaths(tmp_path / "loom")
    p.ensure_dirs()
    return p


@pytest.fixture()
def services(paths: ModelPaths) -> NodeServices:
    return NodeServices(paths=paths)


@pytest.fixture()
def registry(services: NodeServices) -> Any:
    from executor.registry import NodeRegistry
    from nodes import register_builtin_nodes

    reg = NodeRegistry()
    register_builtin_nodes(reg, services)
    return reg
