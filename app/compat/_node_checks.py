"""Checks a pack's node classes before registration, and runs V3 `comfy_entrypoint`s.

The registry validates classes too; these checks catch what a pack author most often gets wrong with a
message that names the pack, the node and the fix, and make sure nothing that would crash `/object_info`
or validation later (an `INPUT_TYPES` that raises, a missing `FUNCTION`) gets in.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from executor.contract import is_display_only

log = logging.getLogger("loom.custom_nodes")


class InvalidNodeError(ValueError):
    """A pack declares a node class that cannot work; the message says which and how to fix it."""


def check_node_class(node_id: str, cls: Any, module: str, warnings: list[str] | None = None) -> type:
    """Return the V1 class to register for `node_id` (V3 classes are adapted), or raise InvalidNodeError.

    What ComfyUI accepts but Loom would not use as declared (an OUTPUT_TOOLTIPS shorter than RETURN_TYPES)
    is fixed on the class and described in `warnings`, not refused.
    """
    where = f"node {node_id!r} of pack {module!r}"
    if not isinstance(node_id, str) or not node_id:
        raise InvalidNodeError(f"{where}: NODE_CLASS_MAPPINGS keys must be non-empty strings")
    if not isinstance(cls, type):
        raise InvalidNodeError(f"{where}: NODE_CLASS_MAPPINGS values must be classes, got {type(cls).__name__}")
    adapter = getattr(cls, "_loom_as_v1", None)
    if callable(adapter):  # an io.ComfyNode subclass is V3 even where it also declares V1 attributes, as in ComfyUI
        cls = adapter()
        if not isinstance(cls, type):
            raise InvalidNodeError(f"{where}: its V3 adapter did not produce a class")
    _check_input_types(where, cls)
    returns = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(returns, (tuple, list)) or not all(isinstance(t, (str, list, tuple)) for t in returns):
        raise InvalidNodeError(
            f"{where}: RETURN_TYPES must be a tuple of type names such as ('IMAGE',) or () for a sink, "
            f"got {returns!r}"
        )
    function = getattr(cls, "FUNCTION", None)
    if (function is not None or not is_display_only(cls)) and (
            not isinstance(function, str) or not callable(getattr(cls, function, None))):
        raise InvalidNodeError(
            f"{where}: FUNCTION must name a method of the class, got {function!r}; "
            f"set FUNCTION = '<method name>' and define that method"
        )
    for attr in ("RETURN_NAMES", "OUTPUT_IS_LIST", "OUTPUT_TOOLTIPS"):
        value = getattr(cls, attr, None)
        if value is not None and not isinstance(value, (tuple, list)):
            raise InvalidNodeError(f"{where}: {attr} must be a tuple with one entry per output, got {value!r}")
        if value is not None and len(value) != len(returns):
            _fit_to_outputs(cls, attr, value, tuple(returns), where, warnings)
    return cls


# ComfyUI registers a class whatever the lengths of these tuples (it reads them by output index), so a
# mismatch is a warning; the class gets a tuple of the right length so every Loom layer can index it.
_FILLER = {"RETURN_NAMES": None, "OUTPUT_IS_LIST": False, "OUTPUT_TOOLTIPS": ""}


def _fit_to_outputs(cls: type, attr: str, value: tuple[Any, ...] | list[Any], returns: tuple[Any, ...],
                    where: str, warnings: list[str] | None) -> None:
    n = len(returns)
    filler = [returns[i] if _FILLER[attr] is None else _FILLER[attr] for i in range(len(value), n)]
    fitted = tuple(value[:n]) + tuple(filler)
    message = (f"{where}: {attr} has {len(value)} entries but RETURN_TYPES has {n}; ComfyUI accepts that, "
               f"Loom uses {fitted!r}. Give one entry per output")
    setattr(cls, attr, fitted)
    log.warning("custom nodes: %s", message)
    if warnings is not None:
        warnings.append(message)


def _check_input_types(where: str, cls: type) -> None:
    input_types = getattr(cls, "INPUT_TYPES", None)
    if not callable(input_types):
        raise InvalidNodeError(f"{where}: INPUT_TYPES must be a classmethod returning a dict")
    try:
        spec = input_types()
    except Exception as exc:
        raise InvalidNodeError(
            f"{where}: INPUT_TYPES() raised {type(exc).__name__}: {exc}; it must return "
            f"{{'required': {{name: (TYPE, {{options}})}}}} without arguments"
        ) from exc
    if not isinstance(spec, dict):
        raise InvalidNodeError(f"{where}: INPUT_TYPES() must return a dict, got {type(spec).__name__}")
    for section in ("required", "optional"):
        inputs = spec.get(section) or {}
        if not isinstance(inputs, dict):
            raise InvalidNodeError(f"{where}: INPUT_TYPES()[{section!r}] must be a dict, got {inputs!r}")
        for name, entry in inputs.items():
            ok = isinstance(entry, (tuple, list)) and len(entry) >= 1 and isinstance(entry[0], (str, list, tuple))
            if ok and len(entry) > 1 and entry[1] is not None and not isinstance(entry[1], dict):
                ok = False
            if not ok:
                raise InvalidNodeError(
                    f"{where}: input {name!r} in INPUT_TYPES()[{section!r}] must be a tuple (TYPE,) or "
                    f"(TYPE, {{options}}) where TYPE is a type name or a list of choices, got {entry!r}"
                )
    hidden = spec.get("hidden") or {}
    if not isinstance(hidden, dict):
        raise InvalidNodeError(f"{where}: INPUT_TYPES()['hidden'] must be a dict, got {hidden!r}")


def run_sync(value: Any) -> Any:
    """Resolve `value` if it is awaitable, also when called from inside a running event loop."""
    if not inspect.isawaitable(value):
        return value
    # Always on a helper thread (unlike executor.blocking.run_blocking): asyncio.run() on this thread would
    # unset its event loop afterwards, and packs imported later call asyncio.get_event_loop() expecting the
    # server's loop (as in ComfyUI).
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(_await(value))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="loom-custom-node-entrypoint")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _await(value: Any) -> Any:
    return await value


def run_entrypoint(entrypoint: Callable[[], Any]) -> list[tuple[str, type, str]]:
    """Call a V3 `comfy_entrypoint` and return (node id, V1 class, display name) per listed node."""
    extension = run_sync(entrypoint())
    on_load = getattr(extension, "on_load", None)
    if callable(on_load):
        run_sync(on_load())
    nodes = run_sync(extension.get_node_list())
    result: list[tuple[str, type, str]] = []
    for node in nodes:
        adapter = getattr(node, "_loom_as_v1", None)
        if callable(adapter):
            v1 = adapter()
            result.append((v1._LOOM_NODE_ID, v1, v1._LOOM_DISPLAY_NAME))
        elif isinstance(node, type) and hasattr(node, "INPUT_TYPES") and callable(stub := getattr(node, "GET_SCHEMA", None)):
            # a V1 class listed with a schema stub naming it (ComfyUI reads only node_id / display_name then)
            schema = stub()
            result.append((schema.node_id, node, getattr(schema, "display_name", None) or schema.node_id))
        else:
            raise TypeError(f"comfy_entrypoint listed {node!r}, which is neither an io.ComfyNode subclass nor a "
                            "V1 node class with GET_SCHEMA()")
    return result
