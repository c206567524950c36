"""Fixtures for executor tests: a registry of fresh fixture nodes and its call log."""
from __future__ import annotations

import pytest
from executor_fixture_nodes import CallLog, make_nodes

from executor import NodeRegistry


@pytest.fixture
def nodes() -> tuple[NodeRegistry, CallLog]:
    classes, log = make_nodes()
    registry = NodeRegistry()
    registry.register_many(classes, {"Add": "Add Two Ints"}, source="builtin")
    return registry, log
