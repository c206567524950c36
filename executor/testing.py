"""Run nodes and graphs in-process without a server: helpers for node authors' tests.

Example::

    from executor.testing import run_node, run_graph

    def test_my_node():
        assert run_node(MyAdd, a=1, b=2).result == (3,)

    def test_my_graph():
        run = run_graph({"MyAdd": MyAdd, "Show": Show}, {
            "1": {"class_type": "MyAdd", "inputs": {"a": 1, "b": 2}},
            "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
        })
        assert run.ui["2"] == {...}
        assert run.value("1") == 3

Both raise ``GraphRunError`` (with the ``execution_error`` payload and traceback) when a node fails, and
``PromptValidationError`` when the graph is invalid, so a failing node fails the test with its own message.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from executor.cache import CachePolicy
from executor.contract import output_is_list
from executor.errors import GraphRunError
from executor.events import CollectingSink, InterruptFlag
from executor.execution import PromptExecutor
from executor.outcome import ExecutionOutcome
from executor.registry import NodeRegistry
from executor.validation import validate_prompt


@dataclass
class GraphRun:
    """The result of ``run_graph``: UI outputs, every node's output lists, the events and the outcome."""

    outcome: ExecutionOutcome
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def ui(self) -> dict[str, dict[str, Any]]:
        """The merged ``ui`` dict per node (history ``outputs``)."""
        return self.outcome.outputs

    @property
    def outputs(self) -> dict[str, list[list[Any]]]:
        """Per node id, one list of values per output slot (as they flowed on the links)."""
        return self.outcome.values

    def value(self, node_id: str, index: int = 0) -> Any:
        """The single value of output ``index`` of ``node_id`` (the list if it holds several)."""
        values = self.outcome.values[node_id][index]
        return values[0] if len(values) == 1 else values


@dataclass
class NodeRun:
    """The result of ``run_node``: the output tuple, the ``ui`` dict, and the events."""

    result: tuple[Any, ...]
    ui: dict[str, Any] | None
    events: list[tuple[str, dict[str, Any]]]


def _registry(nodes: NodeRegistry | Mapping[str, type]) -> NodeRegistry:
    if isinstance(nodes, NodeRegistry):
        return nodes
    registry = NodeRegistry()
    registry.register_many(nodes, source="custom_nodes.test")
    return registry


def run_graph(nodes: NodeRegistry | Mapping[str, type], prompt: Mapping[str, Any], *, validate: bool = True,
              extra_data: Mapping[str, Any] | None = None, outputs: Sequence[str] | None = None,
              executor: PromptExecutor | None = None, interrupt: InterruptFlag | None = None) -> GraphRun:
    """Validate (optionally) and execute an API-format ``prompt`` with a registry or NODE_CLASS_MAPPINGS.

    ``outputs`` defaults to the validated output nodes (every node if validation is skipped and none is
    an output node). Pass ``executor`` to reuse its cache across calls.
    """
    registry = _registry(nodes)
    prompt_dict: Mapping[str, Any] = prompt
    targets = list(outputs) if outputs is not None else None
    if validate:
        valid = validate_prompt(registry, prompt, partial_execution_targets=targets)
        prompt_dict, targets = valid.prompt, valid.outputs
    executor = executor or PromptExecutor(registry, cache=CachePolicy.classic())
    executor.keep_values = True
    sink = CollectingSink()
    outcome = executor.execute(prompt_dict, "test", extra_data or {}, targets, sink=sink, interrupt=interrupt)
    if outcome.status != "success":
        raise GraphRunError(outcome.error or {"exception_message": outcome.status})
    return GraphRun(outcome, sink.events)


def run_node(cls: type, /, *, extra_data: Mapping[str, Any] | None = None, **inputs: Any) -> NodeRun:
    """Run one node class with literal ``inputs`` (any Python objects) through the real executor.

    Hidden inputs, the execution context (progress, interrupt), list mapping and lazy-input requests all
    behave as in a real prompt. Returns the output tuple (an ``OUTPUT_IS_LIST`` slot gives the whole list).
    """
    registry = NodeRegistry()
    name = cls.__name__
    registry.register(name, cls, source="custom_nodes.test")
    prompt = {"node": {"class_type": name, "inputs": {k: {"__value__": v} for k, v in inputs.items()}}}
    executor = PromptExecutor(registry, cache=CachePolicy.none(), keep_values=True)
    sink = CollectingSink()
    outcome = executor.execute(prompt, "test", extra_data or {}, ["node"], sink=sink)
    if outcome.status != "success":
        raise GraphRunError(outcome.error or {"exception_message": outcome.status})
    slots = outcome.values.get("node", [])
    as_list = output_is_list(cls)
    result = tuple(slot if (j < len(as_list) and as_list[j]) or len(slot) != 1 else slot[0]
                   for j, slot in enumerate(slots))
    return NodeRun(result, outcome.outputs.get("node"), sink.events)
