"""Fuzz: validation either accepts or raises PromptValidationError; execute never raises."""
from __future__ import annotations

from typing import Any

from executor_fixture_nodes import make_nodes
from hypothesis import given, settings
from hypothesis import strategies as st

from executor import NodeRegistry, PromptExecutor, PromptValidationError, validate_prompt

CLASSES, _ = make_nodes()
NAMES = [*CLASSES, "Unknown"]
IDS = ["1", "2", "3", "4", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-200, 200), st.floats(allow_nan=True),
                    st.text(max_size=5), st.sampled_from(["plain", "upper", "a.png"]))
links = st.tuples(st.sampled_from(IDS), st.integers(-1, 3)).map(list)
values = st.one_of(scalars, links, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars,
                                                                                   max_size=2))
inputs = st.dictionaries(st.sampled_from(["value", "a", "b", "text", "mode", "n", "values", "cond", "on_true",
                                          "on_false", "steps", "name", "count", "times", "open", "message"]),
                         values, max_size=5)
nodes = st.one_of(st.fixed_dictionaries({"class_type": st.sampled_from(NAMES), "inputs": inputs}),
                  st.fixed_dictionaries({"inputs": inputs}), scalars)
prompts = st.dictionaries(st.sampled_from(IDS), nodes, max_size=5)


@settings(max_examples=150, deadline=None)
@given(prompts)
def test_validation_and_execution_never_crash(prompt: dict[str, Any]) -> None:
    classes, _ = make_nodes()
    reg = NodeRegistry()
    reg.register_many(classes)
    try:
        valid = validate_prompt(reg, prompt)
    except PromptValidationError as err:
        wire = err.to_wire()
        assert isinstance(wire["error"]["message"], str) and isinstance(wire["node_errors"], dict)
        valid = None
    executor = PromptExecutor(reg)
    outcome = executor.execute(prompt, "raw", {}, None)  # unvalidated input must not crash either
    assert outcome.status in {"success", "error", "interrupted"}
    if valid is not None:
        outcome = executor.execute(valid.prompt, "valid", {}, valid.outputs)
        assert outcome.status in {"success", "error"}
