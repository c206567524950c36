"""`Engine`: what runs prompts (registry, executor, node services, model folders, model manager), and
`build_engine(config)`, the one function that builds it for the server, the Ray worker actor and the runner.

Heavy packages (torch, through `nodes` / `engine`) are imported inside `build_engine` and
`engine.lazy_models.LazyModelManager`,
never at import time. Tests build an `Engine` directly around small pure-Python fixture nodes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.config import Config
from engine.lazy_models import LazyModelManager

if TYPE_CHECKING:
    from engine.paths import ModelPaths
    from executor import CachePolicy, EventSink, ExecutionOutcome, InterruptFlag, NodeRegistry
    from nodes.services import NodeServices

__all__ = ["Engine", "ExecutorLike", "build_engine", "make_paths"]


class ExecutorLike(Protocol):
    """What the app needs of `executor.PromptExecutor`: run one prompt, forget caches (`/free`)."""

    def execute(self, prompt: Mapping[str, Any], prompt_id: str, extra_data: Mapping[str, Any] | None = None,
                execute_outputs: Sequence[str] | None = None, sink: EventSink | None = None,
                interrupt: InterruptFlag | None = None) -> ExecutionOutcome: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class Engine:
    """One engine instance: everything a prompt run touches, owned together and freed together."""

    registry: NodeRegistry
    executor: ExecutorLike | None  # None where prompts run elsewhere (the Ray backend's server side)
    services: NodeServices | None = None  # None in tests with fixture nodes only
    paths: ModelPaths | None = None
    models: LazyModelManager | None = None

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """Honour POST /free between prompts: unload models; with free_memory also drop loaded checkpoint
        files and the executor's output cache."""
        if self.models is not None and (unload_models or free_memory):
            self.models.unload_all()
            if free_memory:
                self.models.forget_files()  # the next prompt reloads from disk
        if free_memory and self.executor is not None:
            self.executor.reset()


def make_paths(config: Config) -> ModelPaths:
    """The model, input and output folders `config` names."""
    from engine.paths import ModelPaths

    return ModelPaths(config.base_directory, models_dir=config.models_dir, input_dir=config.input_dir,
                      output_dir=config.output_dir, temp_dir=config.temp_dir, user_dir=config.user_dir,
                      extra_model_paths=config.extra_model_paths_config)


def _cache_policy(config: Config) -> CachePolicy:
    from executor import CachePolicy

    if config.cache == "none":
        return CachePolicy.none()
    if config.cache == "lru":
        return CachePolicy.lru(config.cache_lru)
    if config.cache == "ram":
        return CachePolicy.ram_pressure(config.cache_ram)
    return CachePolicy.classic()


def build_engine(config: Config) -> Engine:
    """The production engine: built-in nodes registered over `config`'s folders, a lazily built model
    manager, an executor with `config`'s cache policy."""
    from executor import NodeRegistry, PromptExecutor
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    paths = make_paths(config)
    models = LazyModelManager(config.cpu)
    services = NodeServices(paths=paths, models=models, preview_method=config.preview_method,
                            disable_metadata=config.disable_metadata)
    registry = NodeRegistry()
    register_builtin_nodes(registry, services)
    executor = PromptExecutor(registry, cache=_cache_policy(config))
    return Engine(registry=registry, executor=executor, services=services, paths=paths, models=models)
