"""docs/nodes.md is what scripts/gen_nodes_doc.py renders from the registry today."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_nodes_doc", REPO / "scripts" / "gen_nodes_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nodes_doc_is_current() -> None:
    from nodes import builtin_node_classes

    text = _script().render()
    doc = REPO / "docs" / "nodes.md"
    current = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    assert current == text, "docs/nodes.md is out of date: run `.venv/bin/python scripts/gen_nodes_doc.py`"
    for name in builtin_node_classes():
        assert f"| `{name}` |" in text, f"{name} is missing from docs/nodes.md"
