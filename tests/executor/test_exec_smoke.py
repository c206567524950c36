"""End-to-end smoke: validate then execute a small graph."""
from __future__ import annotations

from executor_fixture_nodes import CallLog

from executor import CollectingSink, NodeRegistry, PromptExecutor, validate_prompt


def test_validate_and_execute_small_graph(nodes: tuple[NodeRegistry, CallLog]) -> None:
    registry, log = nodes
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": 2}},
        "2": {"class_type": "Const", "inputs": {"value": "3"}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
    }
    valid = validate_prompt(registry, prompt)
    assert valid.outputs == ["4"]
    assert valid.prompt["2"]["inputs"]["value"] == 3  # coerced in the normalised copy
    assert prompt["2"]["inputs"]["value"] == "3"  # the caller's dict is untouched
    sink = CollectingSink()
    outcome = PromptExecutor(registry).execute(valid.prompt, "p1", {}, valid.outputs, sink=sink)
    assert outcome.status == "success", outcome.error
    assert outcome.outputs == {"4": {"value": [5]}}
    assert sorted(log.calls) == ["1", "2", "3", "4"]
    assert sink.names()[0] == "execution_start"
    assert sink.names()[-1] == "execution_success"
