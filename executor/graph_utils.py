"""Helpers for nodes that expand into sub-graphs: ``GraphBuilder``, ``ExecutionBlocker``, ``is_link``."""
from __future__ import annotations

from typing import Any

from executor.context import current


def is_link(value: Any) -> bool:
    """Return whether ``value`` is a link ``[source_node_id: str, output_index: int]`` (ComfyUI's test)."""
    t = type(value)
    if t is list:
        if len(value) == 2 and type(value[0]) is str and type(value[1]) is int:
            return True
    elif t is not tuple and not isinstance(value, (list, tuple)):
        return False
    if len(value) != 2 or not isinstance(value[0], str):
        return False
    index = value[1]
    return type(index) is int or (isinstance(index, (int, float)) and not isinstance(index, bool))


class ExecutionBlocker:
    """Returned in place of an output: consumers do not run, their outputs become blockers too.

    With a ``message``, the first consumer that meets it reports an ``execution_error`` event
    ("Execution Blocked: <message>") and passes on a silent blocker; the prompt still succeeds.
    """

    __slots__ = ("message",)

    def __init__(self, message: str | None) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


class GraphNode:
    """One node being built by a ``GraphBuilder``."""

    def __init__(self, builder: GraphBuilder, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.builder = builder
        self.id = node_id
        self.class_type = class_type
        self.inputs = dict(inputs)
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        """Return a link to output ``index`` of this node."""
        return [self.id, index]

    def set_input(self, name: str, value: Any) -> None:
        """Set (or, with None, remove) input ``name``."""
        if value is None:
            self.inputs.pop(name, None)
        else:
            self.inputs[name] = value

    def get_input(self, name: str) -> Any:
        """Return input ``name`` or None."""
        return self.inputs.get(name)

    def set_override_display_id(self, display_id: str) -> None:
        """Show this node's events under ``display_id`` instead of the parent's id."""
        self.override_display_id = display_id

    def serialize(self) -> dict[str, Any]:
        """Return the API-format dict of this node."""
        data: dict[str, Any] = {"class_type": self.class_type, "inputs": dict(self.inputs)}
        if self.override_display_id is not None:
            data["override_display_id"] = self.override_display_id
        return data


class GraphBuilder:
    """Build an API-format graph whose node ids are unique and deterministic across runs.

    Inside a node call the default prefix is ``"<node id>.<call index>.<graph index>."`` taken from the
    execution context; outside one, pass ``prefix`` explicitly.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = self.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, GraphNode] = {}
        self._counter = 1

    @staticmethod
    def alloc_prefix() -> str:
        """Return a fresh deterministic prefix for the node call running now (``""`` outside one)."""
        ctx = current()
        return "" if ctx is None else f"{ctx.node_id}.{ctx.call_index}.{ctx.next_graph_index()}."

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphNode:
        """Add (or return the existing) node ``id`` of ``class_type`` with ``inputs``."""
        if id is None:
            id = str(self._counter)
            self._counter += 1
        full_id = self.prefix + id
        if full_id in self.nodes:
            return self.nodes[full_id]
        node = GraphNode(self, full_id, class_type, inputs)
        self.nodes[full_id] = node
        return node

    def lookup_node(self, id: str) -> GraphNode | None:
        """Return the node with local id ``id`` or None."""
        return self.nodes.get(self.prefix + id)

    def remove_node(self, id: str) -> None:
        """Remove the node with local id ``id``."""
        self.nodes.pop(self.prefix + id, None)

    def finalize(self) -> dict[str, dict[str, Any]]:
        """Return the graph as an API-format dict (the ``expand`` value of a node result)."""
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}


def add_graph_prefix(graph: dict[str, dict[str, Any]], outputs: tuple[Any, ...] | list[Any],
                     prefix: str) -> tuple[dict[str, dict[str, Any]], tuple[Any, ...]]:
    """Return ``graph`` with ``prefix`` added to its node ids and internal links, and ``outputs`` likewise."""

    def relink(value: Any) -> Any:
        if is_link(value) and value[0] in graph:
            return [prefix + value[0], value[1]]
        return value

    new_graph = {prefix + node_id: {**node, "class_type": node["class_type"],
                                    "inputs": {k: relink(v) for k, v in (node.get("inputs") or {}).items()}}
                 for node_id, node in graph.items()}
    return new_graph, tuple(relink(o) for o in outputs)
