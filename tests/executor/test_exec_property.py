"""Property test: random DAGs compute what a direct evaluation computes; the cache re-runs exactly the
descendants of a changed literal."""
from __future__ import annotations

import copy
from typing import Any

from executor_fixture_nodes import make_nodes
from hypothesis import given, settings
from hypothesis import strategies as st

from executor import NodeRegistry, PromptExecutor


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=12))
    prompt: dict[str, Any] = {}
    for i in range(n):
        if i == 0 or draw(st.booleans()):
            prompt[str(i)] = {"class_type": "Const", "inputs": {"value": draw(st.integers(-9, 9))}}
        else:
            a = draw(st.integers(0, i - 1))
            b = draw(st.one_of(st.integers(0, i - 1), st.integers(-9, 9).map(lambda v: -v - 100)))
            prompt[str(i)] = {"class_type": "Add", "inputs": {
                "a": [str(a), 0], "b": [str(b), 0] if b >= 0 else -b - 100}}
    sinks = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True))
    for j, s in enumerate(sinks):
        prompt[f"out{j}"] = {"class_type": "Show", "inputs": {"value": [str(s), 0]}}
    return prompt


def evaluate(prompt: dict[str, Any], node_id: str) -> int:
    node = prompt[node_id]
    if node["class_type"] == "Const":
        return int(node["inputs"]["value"])
    values = [evaluate(prompt, v[0]) if isinstance(v, list) else v for v in (node["inputs"]["a"], node["inputs"]["b"])]
    return int(values[0] + values[1])


def ancestors_of_outputs(prompt: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    stack = [k for k in prompt if k.startswith("out")]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(v[0] for v in prompt[node]["inputs"].values() if isinstance(v, list))
    return seen


@settings(max_examples=60, deadline=None)
@given(dags(), st.integers(0, 11), st.integers(-9, 9))
def test_random_dags_and_cache_invalidation(prompt: dict[str, Any], pick: int, new_value: int) -> None:
    classes, log = make_nodes()
    reg = NodeRegistry()
    reg.register_many(classes)
    executor = PromptExecutor(reg)
    outcome = executor.execute(prompt, "p", {}, None)
    assert outcome.status == "success", outcome.error
    for out_id, node in prompt.items():
        if out_id.startswith("out"):
            assert outcome.outputs[out_id] == {"value": [evaluate(prompt, node["inputs"]["value"][0])]}
    needed = ancestors_of_outputs(prompt)
    assert set(log.calls) <= needed
    log.calls.clear()
    executor.execute(prompt, "p", {}, None)
    assert log.calls == []
    consts = [k for k, v in prompt.items() if v["class_type"] == "Const"]
    target = consts[pick % len(consts)]
    changed = copy.deepcopy(prompt)
    old_value = changed[target]["inputs"]["value"]
    changed[target]["inputs"]["value"] = new_value
    outcome = executor.execute(changed, "p", {}, None)
    for out_id, node in changed.items():
        if out_id.startswith("out"):
            assert outcome.outputs[out_id] == {"value": [evaluate(changed, node["inputs"]["value"][0])]}
    if new_value == old_value:
        assert log.calls == []
    else:
        downstream = {target}
        for node_id, node in changed.items():  # node ids are in topological order by construction
            if any(isinstance(v, list) and v[0] in downstream for v in node["inputs"].values()):
                downstream.add(node_id)
        assert set(log.calls) <= downstream & needed  # nothing upstream or beside the change re-runs
        if target in needed:
            assert target in log.calls or any(  # an identical Const elsewhere may already hold the value
                changed[k]["class_type"] == "Const" and changed[k]["inputs"]["value"] == new_value
                for k in changed if k != target)
