"""``PromptExecutor``: runs validated prompts with an output cache and node-instance cache (spec 5).

One executor serves one worker: ``execute`` runs one prompt at a time. It emits the prompt-level events
(``execution_start``, ``execution_cached``, ``executing``, ``progress``, ``progress_state``, ``executed``,
``execution_success`` / ``execution_error`` / ``execution_interrupted``) through the ``EventSink``. It does
**not** emit the final ``executing {"node": null}``: the server sends that after writing history.
"""
from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, cast

from executor.cache import CachePolicy, OutputCache
from executor.contract import is_output_node
from executor.dynprompt import DynamicPrompt
from executor.errors import PromptValidationError
from executor.events import EventSink, InterruptFlag, NullSink, now_ms
from executor.outcome import ExecutionOutcome
from executor.prompt import Prompt, parse_prompt
from executor.registry import NodeRegistry
from executor.run import PromptRun
from executor.signature import ClassTable

log = logging.getLogger(__name__)


def _is_normalised(prompt: Mapping[str, Any]) -> bool:
    """Whether ``prompt`` already has the shape ``parse_prompt`` produces (a validated prompt does)."""
    if type(prompt) is not dict:
        return False
    for node_id, node in prompt.items():
        if type(node_id) is not str or type(node) is not dict:
            return False
        if type(node.get("class_type")) is not str or type(node.get("inputs")) is not dict:
            return False
    return True


class PromptExecutor:
    """Executes prompts against a ``NodeRegistry``; keeps outputs and node instances between prompts."""

    def __init__(self, registry: NodeRegistry, cache: CachePolicy | None = None, keep_values: bool = False) -> None:
        self.registry = registry
        self.policy = cache or CachePolicy.classic()
        self.cache: OutputCache = self.policy.create()
        self.keep_values = keep_values
        self._objects: dict[tuple[str, str], Any] = {}
        self.classes = ClassTable(registry)

    def instance(self, node_id: str, class_type: str, cls: type) -> Any:
        """Return the node object of ``(node_id, class_type)``, created once and reused while cached."""
        if not self.cache.reuse_objects:
            return cls()
        key = (node_id, class_type)
        obj = self._objects.get(key)
        if obj is None:
            obj = cls()
            self._objects[key] = obj
        return obj

    def reset(self) -> None:
        """Forget cached outputs and node instances (``/free``)."""
        self.cache.clear()
        self._objects.clear()
        self.classes.clear()

    def execute(self, prompt: Mapping[str, Any], prompt_id: str, extra_data: Mapping[str, Any] | None = None,
                execute_outputs: Sequence[str] | None = None, sink: EventSink | None = None,
                interrupt: InterruptFlag | None = None) -> ExecutionOutcome:
        """Run ``execute_outputs`` (default: every output node) of a validated prompt; never raises.

        Node failures, cycles and interrupts become an ``ExecutionOutcome`` with status ``"error"`` /
        ``"interrupted"`` plus the matching event.
        """
        sink = sink or NullSink()
        interrupt = interrupt or InterruptFlag()
        interrupt.clear()
        start = {"prompt_id": prompt_id, "timestamp": now_ms()}
        sink.emit("execution_start", start)
        try:
            return self._execute(prompt, prompt_id, dict(extra_data or {}), execute_outputs, sink, interrupt, start)
        except Exception as err:  # an executor bug must not kill the worker: report it like a node error
            return self._broken(prompt_id, sink, start, err)

    def _execute(self, prompt: Mapping[str, Any], prompt_id: str, extra: dict[str, Any],
                 execute_outputs: Sequence[str] | None, sink: EventSink, interrupt: InterruptFlag,
                 start: dict[str, Any]) -> ExecutionOutcome:
        try:
            parsed: Prompt = cast(Prompt, prompt) if _is_normalised(prompt) else parse_prompt(prompt)
        except PromptValidationError as err:
            return self._broken(prompt_id, sink, start, err)
        dyn = DynamicPrompt(parsed)
        run = PromptRun(self, dyn, prompt_id, extra, sink, interrupt)
        run.outcome.messages.append(("execution_start", start))
        keys = {node_id: run.sigs.key(node_id) for node_id in parsed}
        self.cache.start_prompt([k for k in keys.values() if k is not None])
        self._forget_instances(parsed)
        cached = [node_id for node_id, key in keys.items() if key is not None and key in self.cache]
        run.emit("execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": now_ms()},
                 message=True)
        if execute_outputs is None:
            execute_outputs = [n for n, node in parsed.items()
                               if (cls := self.registry.find(node["class_type"])) is not None and is_output_node(cls)]
        return run.run([str(o) for o in execute_outputs if str(o) in parsed])

    def _forget_instances(self, prompt: Mapping[str, Any]) -> None:
        if self.policy.kind == "lru":
            return
        live = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        for key in [k for k in self._objects if k not in live and k[0].split(".")[0] not in prompt]:
            del self._objects[key]

    def _broken(self, prompt_id: str, sink: EventSink, start: dict[str, Any], err: Exception) -> ExecutionOutcome:
        payload: dict[str, Any] = {
            "prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
            "exception_message": str(err), "exception_type": f"{type(err).__module__}.{type(err).__qualname__}",
            "traceback": traceback.format_tb(err.__traceback__), "current_inputs": {}, "current_outputs": [],
            "timestamp": now_ms()}
        try:
            sink.emit("execution_error", payload)
        except Exception:  # the sink itself is broken; the outcome still carries the error
            log.exception("prompt %s: the event sink raised while reporting an error", prompt_id)
        return ExecutionOutcome(status="error", error=payload,
                                messages=[("execution_start", start), ("execution_error", payload)])
