"""Output caches keyed by input signature (spec 5.4) and the ``CachePolicy`` that picks one.

Policies: ``classic`` keeps only entries the current prompt can reuse; ``lru(n)`` keeps entries across
prompts and evicts the oldest generations beyond ``n`` entries; ``none`` caches nothing (and node
instances are not reused); ``ram_pressure(gb)`` keeps everything until free RAM drops below ``gb``, then
evicts old, large entries first.
"""
from __future__ import annotations

import gc
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

CacheKind = Literal["classic", "lru", "none", "ram_pressure"]


@dataclass
class CacheEntry:
    """A node's result: per output slot the list of values, plus its merged ``ui`` dict and reports (or None)."""

    outputs: list[list[Any]]
    ui: dict[str, Any] | None = None
    reports: dict[str, list[Any]] | None = None  # NodeContext.report payloads, replayed with the outputs


def estimate_size(value: Any, _depth: int = 0) -> int:
    """Estimate the bytes held by ``value``'s CPU tensors (duck-typed, no torch import)."""
    if _depth > 8:
        return 0
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        device = getattr(getattr(value, "device", None), "type", "cpu")
        return int(value.element_size() * value.nelement()) if device == "cpu" else 0
    if isinstance(value, (list, tuple)):
        return sum(estimate_size(v, _depth + 1) for v in value)
    if isinstance(value, dict):
        return sum(estimate_size(v, _depth + 1) for v in value.values())
    return 0


def _available_ram() -> int:
    import psutil  # local: only the RAM-pressure policy needs it

    return int(psutil.virtual_memory().available)


class OutputCache:
    """Base cache: a dict with generations; subclasses decide what to evict and when."""

    reuse_objects = True

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntry] = {}
        self._used: dict[str, int] = {}
        self.generation = 0

    def start_prompt(self, live_keys: Collection[str]) -> None:
        """Begin a prompt whose nodes have ``live_keys``; entries they use count as fresh."""
        self.generation += 1
        for key in live_keys:
            if key in self._entries:
                self._used[key] = self.generation

    def get(self, key: str | None) -> CacheEntry | None:
        """Return the entry for ``key`` (None for an uncacheable key or a miss)."""
        if key is None:
            return None
        entry = self._entries.get(key)
        if entry is not None:
            self._used[key] = self.generation
        return entry

    def put(self, key: str | None, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` (ignored for an uncacheable key)."""
        if key is None:
            return
        self._entries[key] = entry
        self._used[key] = self.generation

    def after_node(self) -> None:
        """Hook run after each executed node (RAM-pressure eviction)."""

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """Return the cached keys."""
        return list(self._entries)

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        self._used.pop(key, None)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._used.clear()


class ClassicCache(OutputCache):
    """Keep only entries whose key the current prompt produces."""

    def start_prompt(self, live_keys: Collection[str]) -> None:
        """Drop every entry the new prompt cannot reuse."""
        super().start_prompt(live_keys)
        live = set(live_keys)
        for key in [k for k in self._entries if k not in live]:
            self._drop(key)


class LRUCache(OutputCache):
    """Keep entries across prompts; evict the oldest generations while more than ``max_size`` remain."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self._floor = 0  # no entry is older than this generation (skips hopeless eviction passes)

    def start_prompt(self, live_keys: Collection[str]) -> None:
        """Start a generation and evict."""
        super().start_prompt(live_keys)
        self._evict()

    def put(self, key: str | None, entry: CacheEntry) -> None:
        """Store and evict old generations beyond the size limit."""
        super().put(key, entry)
        self._evict()

    def _evict(self) -> None:
        if len(self._entries) <= self.max_size or self._floor >= self.generation:
            return
        for key in sorted(self._entries, key=self._used.__getitem__):
            if len(self._entries) <= self.max_size or self._used[key] >= self.generation:
                break
            self._drop(key)
        self._floor = min(self._used.values(), default=self.generation)


class NoCache(OutputCache):
    """Cache nothing; node instances are not reused either."""

    reuse_objects = False

    def put(self, key: str | None, entry: CacheEntry) -> None:
        """Drop the entry."""


class RamPressureCache(OutputCache):
    """Keep entries until free RAM is below ``threshold_bytes``; then evict by age x size."""

    def __init__(self, threshold_bytes: int, available: Callable[[], int]) -> None:
        super().__init__()
        self.threshold = threshold_bytes
        self._available = available

    def after_node(self) -> None:
        """Evict (oldest and largest first) while free RAM is under the threshold."""
        if self._available() >= self.threshold:
            return
        gc.collect()
        if self._available() >= self.threshold:
            return

        def score(key: str) -> float:
            entry = self._entries[key]
            age = self.generation - self._used[key]
            return float(1.3 ** age) * (estimate_size(entry.outputs) + 1)

        for key in sorted(self._entries, key=score, reverse=True):
            if self._available() > 1.1 * self.threshold:
                break
            self._drop(key)
        gc.collect()


@dataclass(frozen=True)
class CachePolicy:
    """Which output cache an executor uses; build with ``classic()``, ``lru(n)``, ``none()``, ``ram_pressure(gb)``."""

    kind: CacheKind = "classic"
    size: int = 0
    threshold_gb: float = 0.0
    available_bytes: Callable[[], int] | None = field(default=None, compare=False)

    @classmethod
    def classic(cls) -> CachePolicy:
        """ComfyUI's default: keep what the current prompt can reuse."""
        return cls("classic")

    @classmethod
    def lru(cls, size: int) -> CachePolicy:
        """Keep up to ``size`` entries across prompts (oldest generations evicted first)."""
        if size < 1:
            raise ValueError(f"CachePolicy.lru needs a size >= 1, got {size}")
        return cls("lru", size=size)

    @classmethod
    def none(cls) -> CachePolicy:
        """Cache nothing; every node runs every time."""
        return cls("none")

    @classmethod
    def ram_pressure(cls, threshold_gb: float = 4.0,
                     available_bytes: Callable[[], int] | None = None) -> CachePolicy:
        """Keep everything until free RAM < ``threshold_gb`` (``available_bytes`` overrides psutil)."""
        if threshold_gb <= 0:
            raise ValueError(f"CachePolicy.ram_pressure needs a threshold > 0 GB, got {threshold_gb}")
        return cls("ram_pressure", threshold_gb=threshold_gb, available_bytes=available_bytes)

    def create(self) -> OutputCache:
        """Build the cache object this policy describes."""
        if self.kind == "classic":
            return ClassicCache()
        if self.kind == "lru":
            return LRUCache(self.size)
        if self.kind == "none":
            return NoCache()
        return RamPressureCache(int(self.threshold_gb * 1024**3), self.available_bytes or _available_ram)
