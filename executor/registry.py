"""``NodeRegistry``: the node classes of one Loom instance, checked at registration, and /object_info."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from executor.contract import (
    INPUT_CATEGORIES,
    call_input_types,
    check_node_class,
    is_output_node,
    output_is_list,
    return_types,
)
from executor.errors import DuplicateNodeError, RegistrationError

log = logging.getLogger(__name__)

BUILTIN_SOURCE = "builtin"


def _jsonable(value: Any) -> Any:
    """Turn tuples into lists recursively so INPUT_TYPES serialises like ComfyUI's json.dumps."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class NodeRegistry:
    """The registered node classes of one Loom instance (no module globals)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._display: dict[str, str] = {}
        self._sources: dict[str, str] = {}

    def register(self, name: str, cls: type, display_name: str | None = None,
                 source: str = BUILTIN_SOURCE, warnings: list[str] | None = None) -> None:
        """Check ``cls`` against the V1 contract and register it as ``name``.

        Raises ``DuplicateNodeError`` if ``name`` exists (the existing entry is kept) and
        ``RegistrationError`` for an invalid class; with a ``warnings`` list (packs), what ComfyUI lets pass is
        appended there instead (``executor.contract.check_node_class``).
        """
        if name in self._classes:
            raise DuplicateNodeError(name, self._sources[name], source)
        check_node_class(name, cls, warnings)
        self._classes[name] = cls
        self._sources[name] = source
        if display_name:
            self._display[name] = display_name

    def register_many(self, mappings: Mapping[str, type], display_names: Mapping[str, str] | None = None,
                      source: str = BUILTIN_SOURCE) -> list[str]:
        """Register every class of a ``NODE_CLASS_MAPPINGS`` dict; return the ids registered.

        Valid classes are registered even when others fail; afterwards one ``RegistrationError`` lists
        every failure (``.failures`` holds each one).
        """
        display_names = display_names or {}
        registered: list[str] = []
        failures: list[RegistrationError] = []
        for name, cls in mappings.items():
            try:
                self.register(name, cls, display_names.get(name), source)
                registered.append(name)
            except RegistrationError as err:
                failures.append(err)
        if failures:
            lines = "\n".join(f"  - {f}" for f in failures)
            raise RegistrationError(
                f"{len(failures)} node(s) from {source!r} could not be registered "
                f"({len(registered)} registered):\n{lines}", failures=failures)
        return registered

    def set_display_name(self, name: str, display_name: str) -> None:
        """Rename a registered node in the UI (``NODE_DISPLAY_NAME_MAPPINGS`` may rename built-ins)."""
        if name not in self._classes:
            raise KeyError(f"Cannot set a display name for unknown node {name!r}; register it first")
        self._display[name] = display_name

    def get(self, name: str) -> type:
        """Return the class registered as ``name`` (KeyError naming close matches otherwise)."""
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"Node {name!r} is not registered ({len(self._classes)} nodes known); "
                           "is its custom node pack installed?") from None

    def find(self, name: str) -> type | None:
        """Return the class registered as ``name`` or None."""
        return self._classes.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def names(self) -> list[str]:
        """Return the registered ids in registration order."""
        return list(self._classes)

    def source_of(self, name: str) -> str:
        """Return ``"builtin"`` or the module name of the pack that registered ``name``."""
        self.get(name)
        return self._sources[name]

    def display_name_of(self, name: str) -> str:
        """Return the display name (from ``NODE_DISPLAY_NAME_MAPPINGS``) or the id itself."""
        return self._display.get(name, name)

    def python_module_of(self, name: str) -> str:
        """Return ``python_module`` for /object_info: ``"nodes"`` for built-ins, else the source.

        A bare pack name (no dot) is shown as ``custom_nodes.<name>``, as ComfyUI names pack modules.
        """
        source = self.source_of(name)
        if source == BUILTIN_SOURCE:
            return "nodes"
        return source if "." in source else f"custom_nodes.{source}"

    def node_info(self, name: str) -> dict[str, Any]:
        """Return the /object_info node definition of ``name`` (raises if INPUT_TYPES raises)."""
        cls = self.get(name)
        types = call_input_types(cls)
        inputs = {cat: _jsonable(types[cat]) for cat in INPUT_CATEGORIES if cat in types}
        outputs = [_jsonable(t) for t in return_types(cls)]
        names = getattr(cls, "RETURN_NAMES", None)
        info: dict[str, Any] = {
            "input": inputs,
            "input_order": {cat: list(types[cat].keys()) for cat in INPUT_CATEGORIES if cat in types},
            "output": outputs,
            "output_is_list": list(output_is_list(cls)),
            "output_name": list(names) if names is not None else list(outputs),
            "name": name,
            "display_name": self.display_name_of(name),
            "description": getattr(cls, "DESCRIPTION", "") or "",
            "python_module": self.python_module_of(name),
            "category": getattr(cls, "CATEGORY", "sd"),
            "output_node": is_output_node(cls),
        }
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
        if getattr(cls, "DEPRECATED", False):
            info["deprecated"] = True
        if getattr(cls, "EXPERIMENTAL", False):
            info["experimental"] = True
        if hasattr(cls, "API_NODE"):
            info["api_node"] = cls.API_NODE
        return info

    def object_info(self) -> dict[str, Any]:
        """Return the body of GET /object_info; a node whose definition raises is logged and omitted."""
        out: dict[str, Any] = {}
        for name in self._classes:
            try:
                out[name] = self.node_info(name)
            except Exception:
                log.exception("Omitting node %r from /object_info: its definition raised", name)
        return out

    def object_info_for(self, name: str) -> dict[str, Any]:
        """Return the body of GET /object_info/{name}: ``{name: def}``, or ``{}`` if unknown or broken."""
        if name not in self._classes:
            return {}
        try:
            return {name: self.node_info(name)}
        except Exception:
            log.exception("Node %r: its definition raised", name)
            return {}
