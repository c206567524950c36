"""Model memory: which networks are loaded, where they live, and freeing memory under pressure.

One ``ModelManager`` per Loom instance (no module globals). Loaders ask it for a cached result keyed by
file path + mtime (a file is never loaded twice while unchanged); handles ask it to put their network on
the compute device before running, which offloads least-recently-used networks when memory is short.

Budgets: ``ram_budget_bytes`` bounds the networks kept loaded in the file cache (least recently used files
are dropped beyond it, never the one in use); ``vram_budget_bytes`` bounds the networks resident on the
compute device (least recently used are offloaded beyond it). None = no budget beyond free memory.

Networks that run together (a UNet and its ControlNets in one sampling run) are loaded as a group
(``running_together``): room is made for all of them at once, and none is offloaded to make room for another.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from engine.cpu_heap import keep_freed_memory, release_freed_memory
from engine.device import DevicePolicy

__all__ = ["ModelManager", "ManagedModel", "file_cache_key"]

T = TypeVar("T")


def module_size(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def file_cache_key(kind: str, path: str | os.PathLike[str], *extra: Hashable) -> tuple[Hashable, ...]:
    """Cache key of a loaded file: kind, real path, mtime and size (a changed file loads again)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return (kind, real, st.st_mtime_ns, st.st_size, *extra)


@dataclass(eq=False)
class ManagedModel:
    """A network the manager tracks: its module, a display name, kind (unet / clip / vae) and size."""

    module: nn.Module
    name: str
    kind: str
    size: int
    last_used: float = field(default_factory=time.monotonic)
    file_key: tuple[Hashable, ...] | None = None
    partial: Any = None  # engine.partial_load.PartialLoad while only part of the network is on the device

    def device(self) -> torch.device:
        """Where the module's first parameter lives (cpu when it has none)."""
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")


def _held(entry: ManagedModel, kept: tuple[ManagedModel, ...]) -> bool:
    return any(entry is k for k in kept)


class ModelManager:
    """Tracks loaded networks, moves them on and off the compute device, frees memory on demand.

    Parameters: policy: the DevicePolicy (``DevicePolicy.detect()`` when None, at construction time);
    reserve_bytes: memory kept free on the device beyond a model's own size when loading it.
    """

    def __init__(self, policy: DevicePolicy | None = None, reserve_bytes: int = 512 * 1024**2,
                 ram_budget_bytes: int | None = None, vram_budget_bytes: int | None = None,
                 lowvram: bool = True) -> None:
        self.policy = policy if policy is not None else DevicePolicy.detect()
        self.lowvram = lowvram
        self.reserve_bytes = reserve_bytes
        self.ram_budget_bytes = ram_budget_bytes
        self.vram_budget_bytes = vram_budget_bytes
        self._models: list[ManagedModel] = []
        self._files: dict[tuple[Hashable, ...], Any] = {}
        self._file_used: dict[tuple[Hashable, ...], float] = {}
        self._lock = threading.RLock()
        self._pinned: list[ManagedModel] = []  # running together (running_together): never offloaded for room
        keep_freed_memory()  # CPU activations reuse heap pages instead of page-faulting (engine.cpu_heap)

    # ---- file cache -------------------------------------------------------------------------------
    def cached(self, key: tuple[Hashable, ...], build: Callable[[], T]) -> T:
        """The value stored under ``key``, building (and storing) it once; evicts LRU files over budget."""
        with self._lock:
            self._file_used[key] = time.monotonic()
            if key not in self._files:
                first_new = len(self._models)
                self._files[key] = build()
                for entry in self._models[first_new:]:
                    entry.file_key = key
                self._evict_files(keep=key)
            return self._files[key]  # type: ignore[no-any-return]

    def cached_bytes(self) -> int:
        """Bytes of the networks that belong to cached files."""
        with self._lock:
            return sum(m.size for m in self._models if m.file_key in self._files)

    def _evict_files(self, keep: tuple[Hashable, ...]) -> None:
        """Drop least recently used cached files until the cache fits ``ram_budget_bytes``."""
        if self.ram_budget_bytes is None:
            return
        for key in sorted(self._files, key=lambda k: self._file_used.get(k, 0.0)):
            if self.cached_bytes() <= self.ram_budget_bytes:
                break
            if key != keep:
                self.forget_file(key)

    def forget_file(self, key: tuple[Hashable, ...]) -> None:
        """Drop one cached file result and stop tracking its networks (freed once no handle holds them)."""
        with self._lock:
            self._files.pop(key, None)
            self._file_used.pop(key, None)
            for entry in [m for m in self._models if m.file_key == key]:
                self.offload(entry)
                self._models.remove(entry)
        release_freed_memory()

    def cached_keys(self) -> list[tuple[Hashable, ...]]:
        """Keys of the cached files, least recently used first."""
        with self._lock:
            return sorted(self._files, key=lambda k: self._file_used.get(k, 0.0))

    def forget_files(self) -> None:
        """Drop every cached file result (loaded networks stay tracked until garbage collected)."""
        with self._lock:
            self._files.clear()
            self._file_used.clear()
            self._models.clear()

    # ---- tracked networks -------------------------------------------------------------------------
    def register(self, module: nn.Module, name: str, kind: str) -> ManagedModel:
        """Track ``module`` (built on the offload device) and return its record."""
        entry = ManagedModel(module=module, name=name, kind=kind, size=module_size(module))
        with self._lock:
            self._models.append(entry)
        return entry

    def _needs_move(self, entry: ManagedModel) -> bool:
        return entry.device() != self.policy.device_for(entry.kind) or entry.partial is not None

    def load_together(self, entries: Sequence[ManagedModel]) -> None:
        """Load networks that run together (a UNet and its ControlNets, ComfyUI's ``load_models_gpu`` of the
        model and the controls): memory is freed once for all of them, evicting only other networks, and the
        first (the main model) is loaded last, so under memory pressure it is the one loaded partially."""
        with self._lock, self._pinning(entries):
            group = tuple(entries)
            moving = [e for e in group if self._needs_move(e) and self.policy.device_for(e.kind).type != "cpu"]
            if moving:
                self._fit_vram_budget(moving[0], group, sum(e.size for e in moving))
                self.free_memory(sum(e.size for e in moving) + self.reserve_bytes, keep=group)
            for entry in reversed(group):
                self.load(entry)

    @contextmanager
    def _pinning(self, entries: Sequence[ManagedModel]) -> Iterator[None]:
        with self._lock:
            added = [e for e in entries if not _held(e, tuple(self._pinned))]
            self._pinned.extend(added)
        try:
            yield
        finally:
            with self._lock:
                self._pinned = [p for p in self._pinned if not _held(p, tuple(added))]

    @contextmanager
    def running_together(self, entries: Sequence[ManagedModel]) -> Iterator[None]:
        """``load_together`` the networks, and while the block runs never offload one of them to make room for
        another (a ControlNet loaded per step does not evict its UNet)."""
        with self._pinning(entries):
            self.load_together(entries)
            yield

    def load(self, entry: ManagedModel) -> nn.Module:
        """Put a network on the compute device (freeing memory first when needed) and return it."""
        with self._lock:
            entry.last_used = time.monotonic()
            if entry not in self._models:
                self._models.append(entry)
            if entry.file_key is not None and entry.file_key in self._file_used:
                self._file_used[entry.file_key] = entry.last_used
            target = self.policy.device_for(entry.kind)
            if entry.device() != target or entry.partial is not None:
                if target.type != "cpu":
                    self._fit_vram_budget(entry)
                    self.free_memory(entry.size + self.reserve_bytes, keep=(entry,))
                    resident = entry.partial.resident_bytes if entry.partial is not None else 0
                    room = self.policy.free_memory() + resident - self.reserve_bytes
                    if self.lowvram and room < entry.size:
                        if entry.partial is None:  # partial offload: stream the layers that do not fit
                            from engine.partial_load import partial_load

                            entry.partial = partial_load(entry.module, target, self.policy.offload_device,
                                                         max(room, 0))
                        return entry.module
                if entry.partial is not None:
                    entry.partial.remove()
                    entry.partial = None
                entry.module.to(target)
            return entry.module

    def _fit_vram_budget(self, entry: ManagedModel, keep: tuple[ManagedModel, ...] = (),
                         size: int | None = None) -> None:
        """Offload least recently used networks (not ``keep``, not pinned) until ``size`` bytes (default
        ``entry``'s) fit ``vram_budget_bytes`` beside the rest."""
        if self.vram_budget_bytes is None:
            return
        need = entry.size if size is None else size
        kept = (entry, *keep, *self._pinned)
        on_device = [m for m in self._models if m.device() == self.policy.device and not _held(m, kept)]
        resident = sum(m.size for m in self._models if m.device() == self.policy.device and m is not entry)
        for other in sorted(on_device, key=lambda m: m.last_used):
            if resident + need <= self.vram_budget_bytes:
                break
            self.offload(other)
            resident -= other.size

    def offload(self, entry: ManagedModel) -> None:
        """Move a network back to the offload device."""
        with self._lock:
            if entry.partial is not None:
                entry.partial.remove()
                entry.partial = None
            if entry.device() != self.policy.offload_device or any(
                    p.device != self.policy.offload_device for p in entry.module.parameters()):
                entry.module.to(self.policy.offload_device)

    def free_memory(self, required_bytes: int, keep: tuple[ManagedModel, ...] = ()) -> int:
        """Offload least-recently-used networks until ``required_bytes`` are free; returns bytes moved."""
        freed = 0
        with self._lock:
            if self.policy.device.type == "cpu":
                return 0
            kept = (*keep, *self._pinned)
            on_device = [m for m in self._models if not _held(m, kept) and m.device() == self.policy.device]
            for entry in sorted(on_device, key=lambda m: m.last_used):
                if self.policy.free_memory() >= required_bytes:
                    break
                self.offload(entry)
                freed += entry.size
            if freed and self.policy.device.type == "cuda":
                torch.cuda.empty_cache()
        return freed

    def unload_all(self) -> None:
        """Move every tracked network off the compute device (ComfyUI's /free unload_models)."""
        with self._lock:
            for entry in self._models:
                self.offload(entry)
            if self.policy.device.type == "cuda":
                torch.cuda.empty_cache()
        release_freed_memory()

    def run_oom_safe(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; after an out-of-memory error unload everything and retry once."""
        try:
            return fn()
        except torch.OutOfMemoryError:
            self.unload_all()
            return fn()

    def loaded_models(self) -> list[dict[str, Any]]:
        """Tracked networks for /system_stats: name, kind, bytes, device."""
        with self._lock:
            return [
                {"name": m.name, "kind": m.kind, "size": m.size, "device": str(m.device())}
                for m in self._models
            ]
