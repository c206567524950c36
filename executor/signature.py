"""Input signatures: the output cache key of each node (spec 5.4).

A node's key digests its class, its ``IS_CHANGED`` result, its literal inputs (sorted by name), the keys
of its producers (with output index) and, for ``NOT_IDEMPOTENT`` / ``UNIQUE_ID`` nodes, its id. Chaining
producer digests (a Merkle hash) gives ComfyUI's semantics (node ids do not matter, any upstream change
invalidates everything downstream) in linear time. Anything unhashable or NaN makes the key None
(never cached), and so does every key downstream of it.
"""
from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

from executor.contract import HIDDEN_VALUES, ClassInfo, accepted_kwargs
from executor.dynamic_inputs import dynamic_paths, fold
from executor.dynprompt import DynamicPrompt, hidden_value
from executor.graph_utils import is_link
from executor.prompt import unwrap_value
from executor.registry import NodeRegistry


def canonical(value: Any) -> str | None:
    """Return a stable text form of a literal, or None if it cannot be part of a cache key."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return repr(value)
    if t is float:
        return None if value != value else repr(value)
    if t is list or t is tuple:
        parts = [canonical(v) for v in value]
        return None if None in parts else "[" + ",".join(parts) + "]"  # type: ignore[arg-type]
    if t is dict:
        items = sorted((repr(k), canonical(v)) for k, v in value.items())
        if any(v is None for _, v in items):
            return None
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    return None


class ClassTable:
    """``ClassInfo`` per node class, read once and reused across prompts.

    Only input names and flags (``lazy``, ``rawLink``, hidden kinds) are taken from ``INPUT_TYPES`` here;
    option lists stay live in /object_info and validation. ``clear()`` re-reads every class.
    """

    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry
        self._infos: dict[str, ClassInfo] = {}

    def __call__(self, class_type: str) -> ClassInfo:
        info = self._infos.get(class_type)
        if info is None:  # a registry never replaces a class, so the id keeps naming the same class
            info = ClassInfo(self._registry.get(class_type))
            self._infos[class_type] = info
        return info

    def clear(self) -> None:
        """Forget every class's info."""
        self._infos.clear()


class Signatures:
    """Computes (and memoises for one prompt) the cache key of every node."""

    def __init__(self, infos: ClassTable, dynprompt: DynamicPrompt, extra_data: Mapping[str, Any]) -> None:
        self._infos = infos
        self._dyn = dynprompt
        self._extra = extra_data
        self._keys: dict[str, str | None] = {}

    def key(self, node_id: str) -> str | None:
        """Return the cache key of ``node_id`` (None: never cached)."""
        keys = self._keys
        if node_id in keys:
            return keys[node_id]
        stack = [node_id]
        visiting: set[str] = set()
        while stack:
            current = stack[-1]
            if current in keys:
                stack.pop()
                continue
            pending = [p for p in self._producers(current) if p not in keys]
            if pending and current not in visiting:
                visiting.add(current)
                stack.extend(p for p in pending if p not in visiting)
                continue
            stack.pop()
            keys[current] = None if pending else self._immediate(current)
        return keys[node_id]

    def _producers(self, node_id: str) -> list[str]:
        dyn = self._dyn
        if not dyn.has_node(node_id):
            return []
        return [producer for _, producer, _ in dyn.links(node_id) if dyn.has_node(producer)]

    def _immediate(self, node_id: str) -> str | None:
        try:
            return self._digest(node_id)
        except Exception:
            return None  # an unknown class or a broken INPUT_TYPES: run it, do not cache it

    def _digest(self, node_id: str) -> str | None:
        node = self._dyn.get_node(node_id)
        class_type = node["class_type"]
        info = self._infos(class_type)
        parts = [class_type]
        if info.has_is_changed:
            changed = self._is_changed(info, node_id, node["inputs"])
            if changed is None:
                return None
            parts.append(changed)
        if info.keyed_by_id:
            parts.append("id=" + repr(node_id))
        inputs = node["inputs"]
        keys = self._keys
        linked = {name: (producer, index) for name, producer, index in self._dyn.links(node_id)}
        for name in sorted(inputs):
            link = linked.get(name)
            if link is not None:
                producer = keys.get(link[0])
                if producer is None:
                    return None
                parts.append(f"{name}=<{producer}:{link[1]}>")
            else:
                text = canonical(inputs[name])
                if text is None:
                    return None
                parts.append(f"{name}={text}")
        return blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()

    def _is_changed(self, info: ClassInfo, node_id: str, inputs: Mapping[str, Any]) -> str | None:
        kwargs = {k: (None if is_link(v) else unwrap_value(v)) for k, v in inputs.items()
                  if k in info.declared or k in info.hidden or (info.dynamic and info.declares(k))}
        if info.dynamic:
            kwargs = fold(kwargs, dynamic_paths(info.input_types, kwargs))
        for name, kind in info.hidden.items():
            if kind in HIDDEN_VALUES:  # a hidden input of an ordinary type keeps the prompt's literal
                kwargs[name] = hidden_value(kind, node_id, self._dyn, self._extra)
        try:
            func = info.cls.IS_CHANGED  # type: ignore[attr-defined]
            result = func(**accepted_kwargs(func, kwargs))
        except Exception:
            return None
        return canonical(result)
