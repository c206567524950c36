"""executor.testing helpers for node authors."""
from __future__ import annotations

from typing import Any

import pytest
from executor_fixture_nodes import CallLog, make_nodes

from executor import GraphRunError, NodeRegistry, PromptValidationError
from executor.testing import run_graph, run_node


def test_run_node_returns_outputs_and_ui() -> None:
    classes, log = make_nodes()
    assert run_node(classes["Add"], a=2, b=3).result == (5,)
    assert run_node(classes["Range"], n=3).result == ([0, 1, 2],)
    shown = run_node(classes["Show"], value=[1, 2])  # a literal list is passed as-is, not as a link
    assert shown.ui == {"value": [[1, 2]]} and shown.result == ()
    steps = run_node(classes["Steps"], steps=2)
    assert [e for e, _ in steps.events].count("progress") == 2


def test_run_node_raises_with_the_nodes_message() -> None:
    classes, _ = make_nodes()
    with pytest.raises(GraphRunError, match="boom 4") as info:
        run_node(classes["Fail"], value=4)
    assert info.value.payload["exception_type"] == "ValueError"


def test_run_graph_with_mappings_and_registry(nodes: tuple[NodeRegistry, CallLog]) -> None:
    classes, _ = make_nodes()
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 4}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    result = run_graph(classes, prompt)
    assert result.ui == {"3": {"value": [5]}} and result.value("2") == 5 and result.outputs["1"] == [[4]]
    reg, _ = nodes
    assert run_graph(reg, prompt).value("2") == 5
    bad: dict[str, Any] = {"1": {"class_type": "Show", "inputs": {}}}
    with pytest.raises(PromptValidationError):
        run_graph(reg, bad)
