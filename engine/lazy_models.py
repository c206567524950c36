"""The model manager of one engine instance, built on first use.

Creating `engine.model_management.ModelManager` imports torch and probes devices (seconds); a server that has not
run a prompt yet must not pay that. `LazyModelManager` is the one place that defers it: what needs the real manager
calls `real()`; freeing or listing models of a manager never built does nothing and imports nothing.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.model_management import ModelManager

__all__ = ["LazyModelManager"]


class LazyModelManager:
    """Owns at most one `ModelManager`, built thread-safely by the first `real()` call."""

    def __init__(self, cpu_only: bool = False) -> None:
        self.cpu_only = cpu_only
        self._real: ModelManager | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the real manager exists (something used a model)."""
        return self._real is not None

    def real(self) -> ModelManager:
        """The real manager, built on the first call from this instance's device policy."""
        with self._lock:
            if self._real is None:
                from engine.device import DevicePolicy
                from engine.model_management import ModelManager

                self._real = ModelManager(DevicePolicy.detect(cpu_only=self.cpu_only))
            return self._real

    def unload_all(self) -> None:
        """Move every loaded model off the device (nothing to do before the first load)."""
        if self._real is not None:
            self._real.unload_all()

    def forget_files(self) -> None:
        """Drop loaded checkpoints so the next prompt reads them from disk again."""
        if self._real is not None:
            self._real.forget_files()

    def free_memory(self, required_bytes: int) -> None:
        """Offload models until `required_bytes` fit on the device (nothing to do before the first load)."""
        if self._real is not None:
            self._real.free_memory(required_bytes)

    def loaded_models(self) -> list[dict[str, Any]]:
        """What is loaded now (empty before the first load)."""
        return self._real.loaded_models() if self._real is not None else []
