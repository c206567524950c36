"""`sys.modules["nodes"]` for packs: Loom's real `nodes` package plus ComfyUI's `nodes.py` names.

Packs do `import nodes` (at import time and lazily inside node functions) and expect ComfyUI's module:
`nodes.MAX_RESOLUTION`, `nodes.NODE_CLASS_MAPPINGS` (the live catalogue), `nodes.KSampler`,
`nodes.common_ksampler`, ... The proxy keeps the real package's `__path__` and attributes, so Loom's own
`import nodes.x` keeps working unchanged while it is installed.
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from types import ModuleType
from typing import Any

MAX_RESOLUTION = 16384
_COPIED = ("__path__", "__file__", "__spec__", "__package__", "__loader__", "__all__")


class NodeClassMappings(MutableMapping[str, Any]):
    """Live `{node id: class}` view of the registry.

    Assigning adds a node: while a pack is being imported the entry joins that pack's mappings (checked,
    registered and reported like `NODE_CLASS_MAPPINGS`); at any other time it is registered at once.
    """

    def __init__(self, handles: Any) -> None:
        self._handles = handles
        self._registry = handles.registry

    def _pending(self) -> dict[str, Any] | None:
        pending = self._handles.extra.get("pending_mappings")
        return pending if isinstance(pending, dict) else None

    def __getitem__(self, key: str) -> Any:
        pending = self._pending()
        if pending is not None and key in pending:
            return pending[key]
        if key not in self._registry:
            raise KeyError(key)
        return self._registry.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        pending = self._pending()
        if pending is not None:
            pending[key] = value
        else:
            self._registry.register(key, value, display_name=key, source="custom_nodes (nodes.NODE_CLASS_MAPPINGS)")

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"cannot remove node {key!r}: Loom's node catalogue is append-only for packs")

    def __iter__(self) -> Iterator[str]:
        pending = self._pending() or {}
        return iter(list(self._registry.names()) + [k for k in pending if k not in self._registry])

    def __len__(self) -> int:
        return len(list(iter(self)))


class NodeDisplayNameMappings(MutableMapping[str, str]):
    """Live `{node id: display name}` view of the registry."""

    def __init__(self, handles: Any) -> None:
        self._handles = handles
        self._registry = handles.registry
        self._overrides: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key in self._overrides:
            return self._overrides[key]
        if key not in self._registry:
            raise KeyError(key)
        getter = getattr(self._registry, "display_name_of", None)
        if callable(getter):
            return str(getter(key))
        return key

    def __setitem__(self, key: str, value: str) -> None:
        pending = self._handles.extra.get("pending_display")
        if isinstance(pending, dict):  # a pack is being imported: the title joins its display names
            pending[key] = value
            return
        setter = getattr(self._registry, "set_display_name", None)
        if callable(setter) and key in self._registry:
            setter(key, value)
        else:
            self._overrides[key] = value

    def __delitem__(self, key: str) -> None:
        self._overrides.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._registry.names()))

    def __len__(self) -> int:
        return len(list(self._registry.names()))


class NodesProxy(ModuleType):
    """Module object standing in for `nodes` while custom nodes are active."""

    def __init__(self, real: ModuleType, handles: Any) -> None:
        super().__init__(real.__name__, real.__doc__)
        for name in _COPIED:
            if hasattr(real, name):
                self.__dict__[name] = getattr(real, name)
        self.__dict__["real_module"] = real
        self.__dict__["MAX_RESOLUTION"] = MAX_RESOLUTION
        self.__dict__["NODE_CLASS_MAPPINGS"] = NodeClassMappings(handles)
        self.__dict__["NODE_DISPLAY_NAME_MAPPINGS"] = NodeDisplayNameMappings(handles)
        # `{name: folder}` packs may add to instead of WEB_DIRECTORY (Impact Pack); the loader reads what each
        # pack added (app.custom_nodes)
        self.__dict__["EXTENSION_WEB_DIRS"] = handles.extra.setdefault("extension_web_dirs", {})
        self.__dict__["_handles"] = handles

    def __getattr__(self, name: str) -> Any:
        real = self.__dict__["real_module"]
        if hasattr(real, name):
            return getattr(real, name)
        if name.startswith("__"):
            raise AttributeError(name)
        if name in {"common_ksampler", "before_node_execution", "interrupt_processing"}:
            from app.compat import _nodes_api

            return getattr(_nodes_api, name)
        registry = self.__dict__["_handles"].registry
        if name in registry:
            return registry.get(name)
        raise AttributeError(
            f"module 'nodes' has no attribute {name!r}: Loom has no node class or helper of that name "
            f"(node ids available: see GET /object_info)"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        # Submodule imports set `nodes.<sub>` on sys.modules["nodes"]; mirror it on the real package.
        self.__dict__[name] = value
        if isinstance(value, ModuleType):
            setattr(self.__dict__["real_module"], name, value)
