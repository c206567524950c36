"""Shared pieces of the built-in nodes: the services binding and errors that name node and input."""
from __future__ import annotations

from typing import Any, ClassVar

from nodes.services import NodeServices

__all__ = ["BuiltinNode", "NodeInputError", "node_label", "input_error"]


class NodeInputError(ValueError):
    """Bad input at run time; the message names the node, the input and (where relevant) the file."""


class BuiltinNode:
    """Base of every built-in node. `services` is set on a per-registry subclass by `register_builtin_nodes`."""

    services: ClassVar[NodeServices]
    CATEGORY: ClassVar[str] = "sd"
    DISPLAY_NAME: ClassVar[str | None] = None
    RELATIVE_PYTHON_MODULE: ClassVar[str] = "nodes"

    @classmethod
    def _services(cls) -> NodeServices:
        services: NodeServices | None = getattr(cls, "services", None)
        if services is None:
            raise RuntimeError(
                f"{cls.__name__} is not bound to NodeServices; register it with "
                "nodes.register_builtin_nodes(registry, services)"
            )
        return services


def node_label(class_name: str) -> str:
    """`"node 5 (LoadImage)"` while executing, else just the class name."""
    try:
        from executor.context import current
    except ImportError:
        return class_name
    ctx = current()
    node_id = getattr(ctx, "display_node_id", None) or getattr(ctx, "node_id", None) if ctx else None
    return f"node {node_id} ({class_name})" if node_id is not None else class_name


def input_error(class_name: str, input_name: str, message: str) -> NodeInputError:
    """A `NodeInputError` whose message starts with the node and input it is about."""
    return NodeInputError(f"{node_label(class_name)}, input '{input_name}': {message}")


def progress_context() -> Any:
    """The executor's NodeContext of the running node, or None outside execution."""
    try:
        from executor.context import current
    except ImportError:
        return None
    return current()
