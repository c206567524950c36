"""Shared pieces of the built-in nodes: the services binding, input-schema type and errors that name node and input."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from engine.paths import PathError
from engine.types import Latent
from executor.context import NodeContext, current
from nodes.services import NodeServices

if TYPE_CHECKING:
    import torch

    from engine.paths import SaveImagePath

__all__ = ["BuiltinNode", "InputTypes", "NodeInputError", "node_label", "input_error", "progress_context",
           "engine_reports", "latent_samples", "resize_mask_to", "save_target"]

# What INPUT_TYPES returns: {"required" | "optional" | "hidden": {input name: spec}}. It is the wire schema
# of /object_info; a spec is a (type or option list, options dict) tuple or a hidden-input name, so the
# inner values stay Any, in this one place.
InputTypes = dict[str, dict[str, Any]]


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
        services: NodeServices | None = getattr(cls, "services", None)  # unset on an unbound class
        if services is None:
            raise RuntimeError(
                f"{cls.__name__} is not bound to NodeServices; register it with "
                "nodes.register_builtin_nodes(registry, services)"
            )
        return services


def node_label(class_name: str) -> str:
    """`"node 5 (LoadImage)"` while executing, else just the class name."""
    ctx = current()
    if ctx is None:
        return class_name
    node_id = ctx.display_node_id or ctx.node_id
    return f"node {node_id} ({class_name})" if node_id is not None else class_name


def input_error(class_name: str, input_name: str, message: str) -> NodeInputError:
    """A `NodeInputError` whose message starts with the node and input it is about."""
    return NodeInputError(f"{node_label(class_name)}, input '{input_name}': {message}")


def save_target(class_name: str, services: NodeServices, filename_prefix: str, folder: str | None = None,
                width: int = 0, height: int = 0) -> SaveImagePath:
    """Where a save node writes (ComfyUI's naming under `folder`, output/ by default); a prefix Loom refuses (one
    leaving the folder, say) is an input error naming the node's `filename_prefix`."""
    try:
        return services.paths.get_save_image_path(filename_prefix, folder or str(services.paths.output_dir),
                                                  width, height)
    except PathError as exc:
        raise input_error(class_name, "filename_prefix", str(exc)) from exc


def progress_context() -> NodeContext | None:
    """The executor's NodeContext of the running node, or None outside execution."""
    return current()


@contextmanager
def engine_reports() -> Iterator[None]:
    """Engine reports (``engine.reports``) made inside the block go to the running node's context, which puts
    them in the prompt's history entry; outside execution they are dropped."""
    from engine.reports import reporting_to

    ctx = current()
    with reporting_to(ctx.report if ctx is not None else None):
        yield


def latent_samples(latent: Latent, class_name: str, input_name: str) -> torch.Tensor:
    """The `samples` tensor of a LATENT dict; a `NodeInputError` naming node and input when it is not one."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise input_error(class_name, input_name,
                          f"expected a LATENT dict with 'samples', got {type(latent).__name__}")
    return latent["samples"]


def resize_mask_to(mask: torch.Tensor, pixels: torch.Tensor, class_name: str) -> torch.Tensor:
    """`engine.image_ops.resize_mask_to`, its refusal as a `NodeInputError` on the node's `mask` input."""
    from engine import image_ops

    try:
        return image_ops.resize_mask_to(mask, pixels)
    except ValueError as exc:
        raise input_error(class_name, "mask", str(exc)) from exc
