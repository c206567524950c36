"""`Loom`: one engine instance (registry, services, executor, queue store, worker, hub); `build_loom(config)`.

Heavy packages (torch, through `nodes` / `engine`) are imported inside `build_loom`, never at import time.
Tests build a `Loom` directly with small pure-Python fixture nodes.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.config import Config
from app.errors import PromptRejected
from app.hub import Hub
from app.queue_store import QueueStore
from app.worker import Worker, WorkerBackend

__all__ = ["Loom", "build_loom", "build_engine"]

log = logging.getLogger("loom")

OnPromptHandler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Loom:
    """Owns everything one server (or headless runner) needs; no module globals anywhere."""

    config: Config
    registry: Any
    executor: Any
    validate_fn: Callable[..., Any]
    interrupt_flag: Any
    services: Any = None
    paths: Any = None
    hub: Hub = field(default_factory=Hub)
    store: QueueStore | None = None
    worker: WorkerBackend | None = None
    on_prompt_handlers: list[OnPromptHandler] = field(default_factory=list)
    custom_node_report: list[Any] = field(default_factory=list)
    started_at: float = 0.0

    def __post_init__(self) -> None:
        for d in (self.config.input_dir, self.config.output_dir, self.config.temp_dir, self.config.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.paths is None:
            try:
                from engine.paths import ModelPaths
            except ImportError:
                log.warning("engine.paths unavailable: model folder routes answer empty lists")
            else:
                self.paths = _make_paths(ModelPaths, self.config)
        if self.store is None:
            self.store = QueueStore(self.config.user_dir / "loom.db")
        if self.worker is None:
            self.worker = Worker(self.store, self.hub, self.executor, self.interrupt_flag,
                                 preview_method=self.config.preview_method,
                                 preview_size=self.config.preview_size, free=self.free)

    @property
    def queue(self) -> QueueStore:
        assert self.store is not None
        return self.store

    @property
    def backend(self) -> WorkerBackend:
        assert self.worker is not None
        return self.worker

    def validate(self, prompt: dict[str, Any], partial_execution_targets: list[str] | None) -> Any:
        """`executor.validate_prompt`; its PromptValidationError becomes PromptRejected (wire shape)."""
        try:
            return self.validate_fn(self.registry, prompt, partial_execution_targets=partial_execution_targets)
        except Exception as exc:
            to_wire = getattr(exc, "to_wire", None)
            if callable(to_wire):
                raise PromptRejected(to_wire()) from None
            log.exception("validation crashed")
            raise PromptRejected({"error": {"type": "exception_during_validation",
                                            "message": "Prompt validation raised an exception",
                                            "details": f"{type(exc).__name__}: {exc}", "extra_info": {}},
                                  "node_errors": {}}) from None

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """Honour POST /free between prompts: unload models; with free_memory also reset executor caches."""
        models = getattr(self.services, "models", None)
        if isinstance(models, LazyModelManager) and not models.loaded:
            models = None  # nothing was ever loaded: nothing to unload
        if models is not None and (unload_models or free_memory):
            for name in ("unload_all", "unload_all_models", "free_all"):
                fn = getattr(models, name, None)
                if callable(fn):
                    fn()
                    break
            forget = getattr(models, "forget_files", None)
            if free_memory and callable(forget):
                forget()  # drop loaded checkpoints too, so the next prompt reloads from disk
        if free_memory:
            for name in ("reset", "reset_cache", "clear_cache"):
                fn = getattr(self.executor, name, None)
                if callable(fn):
                    fn()
                    break

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.store is not None:
            self.store.close()


class LazyModelManager:
    """Stands in for `engine.model_management.ModelManager` until a node first uses it.

    Creating the real manager imports torch and probes devices (seconds); deferring it keeps server start-up
    fast. Attribute access is forwarded to the real manager, built once, thread-safely.
    """

    def __init__(self, cpu_only: bool) -> None:
        self._cpu_only = cpu_only
        self._real: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._real is not None

    def real(self) -> Any:
        with self._lock:
            if self._real is None:
                from engine.device import DevicePolicy
                from engine.model_management import ModelManager

                self._real = ModelManager(DevicePolicy.detect(cpu_only=self._cpu_only))
            return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real(), name)


def _cache_policy(config: Config) -> Any:
    from executor import CachePolicy

    if config.cache == "none":
        return CachePolicy.none()
    if config.cache == "lru":
        return CachePolicy.lru(config.cache_lru)
    if config.cache == "ram":
        return CachePolicy.ram_pressure(config.cache_ram)
    return CachePolicy.classic()


def _build_services(config: Config) -> tuple[Any, Any]:
    """NodeServices + ModelPaths (nodes teammate's objects); (None, None) when not installed yet."""
    try:
        from engine.paths import ModelPaths
    except ImportError as exc:
        log.warning("engine.paths unavailable (%s): model folders disabled", exc)
        return None, None
    paths = _make_paths(ModelPaths, config)
    try:
        from nodes.services import NodeServices
    except ImportError as exc:
        log.warning("built-in node services unavailable (%s)", exc)
        return None, paths
    models = LazyModelManager(config.cpu)
    return NodeServices(paths=paths, models=models, preview_method=config.preview_method,
                        disable_metadata=config.disable_metadata), paths


def _make_paths(model_paths_cls: Any, config: Config) -> Any:
    return model_paths_cls(config.base_directory, models_dir=config.models_dir, input_dir=config.input_dir,
                           output_dir=config.output_dir, temp_dir=config.temp_dir, user_dir=config.user_dir,
                           extra_model_paths=config.extra_model_paths_config)


def build_engine(config: Config) -> tuple[Any, Any, Any, Any]:
    """(registry with built-in nodes, executor, services, paths): what runs prompts (server or Ray worker)."""
    from executor import NodeRegistry, PromptExecutor

    registry = NodeRegistry()
    services, paths = _build_services(config)
    if services is not None:
        from nodes import register_builtin_nodes

        register_builtin_nodes(registry, services)
    executor = PromptExecutor(registry, cache=_cache_policy(config))
    return registry, executor, services, paths


def build_loom(config: Config) -> Loom:
    """The production Loom: real registry + built-in nodes + executor; custom nodes load in create_app."""
    from executor import InterruptFlag, validate_prompt

    registry, executor, services, paths = build_engine(config)
    extra: dict[str, Any] = {}
    if config.backend == "ray":  # Ray is imported only here, and only when asked for
        from app.cluster import build_ray_parts

        extra = build_ray_parts(config)
    validate_fn: Any = validate_prompt
    if services is not None:  # model-fits-its-use and size checks of the built-in nodes
        from nodes.checks import builtin_checks

        validate_fn = functools.partial(validate_prompt, extra_checks=builtin_checks(services))
    return Loom(config=config, registry=registry, executor=executor, validate_fn=validate_fn,
                interrupt_flag=InterruptFlag(), services=services, paths=paths, **extra)
