"""`Loom`: one server (or headless runner) instance: config, `Engine`, validation, queue store, worker, hub;
`build_loom(config)`.

The engine is built by `app.engine_factory.build_engine` (the same builder the Ray worker actor and the
runner use). Tests build a `Loom` directly around an `Engine` of small pure-Python fixture nodes.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.config import Config
from app.engine_factory import Engine, ExecutorLike, build_engine, make_paths
from app.errors import PromptRejected, error_body
from app.hub import Hub
from app.queue_store import QueueStore
from app.worker import Worker, WorkerBackend

if TYPE_CHECKING:
    from app.custom_nodes import PackReport
    from engine.paths import ModelPaths
    from executor import InterruptFlag, NodeRegistry, ValidatedPrompt
    from nodes.services import NodeServices

__all__ = ["Loom", "build_loom", "OnPromptHandler", "ValidateFn"]

log = logging.getLogger("loom")

OnPromptHandler = Callable[[dict[str, Any]], dict[str, Any]]
ValidateFn = Callable[..., "ValidatedPrompt"]  # validate_prompt(registry, prompt, partial_execution_targets=...)


@dataclass
class Loom:
    """Owns everything one server (or headless runner) needs; no module globals anywhere."""

    config: Config
    engine: Engine
    validate_fn: ValidateFn
    interrupt_flag: InterruptFlag
    hub: Hub = field(default_factory=Hub)
    store: QueueStore | None = None
    worker: WorkerBackend | None = None
    on_prompt_handlers: list[OnPromptHandler] = field(default_factory=list)
    custom_node_report: list[PackReport] = field(default_factory=list)
    started_at: float = 0.0

    def __post_init__(self) -> None:
        for d in (self.config.input_dir, self.config.output_dir, self.config.temp_dir, self.config.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        paths = self.engine.paths
        if paths is None:  # model folder routes answer from the config's folders
            paths = make_paths(self.config)
            self.engine = replace(self.engine, paths=paths)
        paths.create_model_folders()
        if self.store is None:
            self.store = QueueStore(self.config.user_dir / "loom.db")
        if self.worker is None:
            if self.engine.executor is None:
                raise ValueError("Loom: an engine without an executor needs a worker backend (e.g. RayBackend)")
            self.worker = Worker(self.store, self.hub, self.engine.executor, self.interrupt_flag,
                                 preview_method=self.config.preview_method,
                                 preview_size=self.config.preview_size, free=self.engine.free)

    @property
    def registry(self) -> NodeRegistry:
        return self.engine.registry

    @property
    def executor(self) -> ExecutorLike | None:
        return self.engine.executor

    @property
    def services(self) -> NodeServices | None:
        return self.engine.services

    @property
    def paths(self) -> ModelPaths | None:
        return self.engine.paths

    @property
    def queue(self) -> QueueStore:
        assert self.store is not None
        return self.store

    @property
    def backend(self) -> WorkerBackend:
        assert self.worker is not None
        return self.worker

    def validate(self, prompt: dict[str, Any], partial_execution_targets: Sequence[str] | None) -> ValidatedPrompt:
        """`executor.validate_prompt`; its PromptValidationError becomes PromptRejected (wire shape)."""
        from executor import PromptValidationError

        try:
            return self.validate_fn(self.registry, prompt, partial_execution_targets=partial_execution_targets)
        except PromptValidationError as exc:
            raise PromptRejected(exc.to_wire()) from None
        except Exception as exc:
            log.exception("validation crashed")
            raise PromptRejected({"error": error_body("exception_during_validation",
                                                      "Prompt validation raised an exception",
                                                      f"{type(exc).__name__}: {exc}"),
                                  "node_errors": {}}) from None

    def set_preview_method(self, method: str) -> None:
        """Change the server's default preview method (`--preview-method`) for prompts that start afterwards;
        a prompt's `extra_data.preview_method` still overrides it. Only a local worker can be changed."""
        from engine.preview import PREVIEW_METHODS

        if method not in PREVIEW_METHODS:
            raise ValueError(f"preview method {method!r} is not one of {sorted(PREVIEW_METHODS)}")
        if not isinstance(self.worker, Worker) or self.engine.services is None:
            raise NotImplementedError(
                "the default preview method of a server whose prompts run on other workers (the Ray backend) is "
                "fixed at start: use --preview-method, or extra_data.preview_method per prompt")
        self.engine.services.preview_method = method  # what the built-in samplers preview with
        self.worker.preview_method = method
        self.worker.lifecycle.preview_method = method  # what the prompt's preview sink encodes

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """Honour POST /free between prompts (see `Engine.free`)."""
        self.engine.free(unload_models, free_memory)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.store is not None:
            self.store.close()


def build_loom(config: Config) -> Loom:
    """The production Loom: `build_engine(config)` + validation with the built-in checks; custom nodes load
    in `server.create_app`."""
    from executor import InterruptFlag, validate_prompt
    from nodes.checks import builtin_checks

    engine = build_engine(config)
    hub, store, worker = Hub(), None, None
    if config.backend == "ray":  # Ray is imported only here, and only when asked for
        from app.cluster import build_ray_parts

        hub, store, worker = build_ray_parts(config)
    assert engine.services is not None
    validate_fn = functools.partial(validate_prompt, extra_checks=builtin_checks(engine.services))
    return Loom(config=config, engine=engine, validate_fn=validate_fn, interrupt_flag=InterruptFlag(),
                hub=hub, store=store, worker=worker)
