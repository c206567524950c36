"""Loom's graph engine (never imports torch): node registry, prompt validation, execution, cache, events.

Public surface (see docs/architecture.md sections 1-2)::

    reg = NodeRegistry(); reg.register("MyNode", MyNode, source="builtin")
    valid = validate_prompt(reg, prompt)                 # or PromptValidationError(...).to_wire()
    outcome = PromptExecutor(reg).execute(valid.prompt, "id", {}, valid.outputs, sink=sink)

Modules: ``registry`` + ``contract`` (V1 class contract, /object_info), ``prompt`` (API format),
``validation`` + ``checks`` (spec 4), ``execution`` + ``run`` + ``runlist`` + ``node_call`` +
``async_calls`` (spec 5), ``signature`` + ``cache`` (output cache), ``events`` + ``progress`` (EventSink,
InterruptFlag, progress_state), ``context`` (what a running node can reach), ``graph_utils``
(GraphBuilder, ExecutionBlocker), ``dynprompt`` (expanded graphs), ``errors`` (the exception tree),
``testing`` (run nodes in tests), ``declare`` (typed node declarations).
"""
from __future__ import annotations

from executor.cache import CacheEntry, CachePolicy
from executor.context import NodeContext, current
from executor.dynprompt import DynamicPrompt
from executor.errors import (
    DependencyCycleError,
    DuplicateNodeError,
    ExecutionInterrupted,
    GraphRunError,
    InterruptedError_,
    LoomExecutorError,
    NodeContractError,
    PromptValidationError,
    RegistrationError,
)
from executor.events import CollectingSink, EventSink, InterruptFlag, NullSink
from executor.execution import PromptExecutor
from executor.graph_utils import ExecutionBlocker, GraphBuilder, is_link
from executor.outcome import ExecutionOutcome
from executor.prompt import parse_prompt
from executor.registry import NodeRegistry
from executor.validation import NodeError, ValidatedPrompt, validate_prompt

__all__ = [
    "CacheEntry",
    "CachePolicy",
    "CollectingSink",
    "DependencyCycleError",
    "DuplicateNodeError",
    "DynamicPrompt",
    "EventSink",
    "ExecutionBlocker",
    "ExecutionInterrupted",
    "ExecutionOutcome",
    "GraphBuilder",
    "GraphRunError",
    "InterruptFlag",
    "InterruptedError_",
    "LoomExecutorError",
    "NodeContext",
    "NodeContractError",
    "NodeError",
    "NodeRegistry",
    "NullSink",
    "PromptExecutor",
    "PromptValidationError",
    "RegistrationError",
    "ValidatedPrompt",
    "current",
    "is_link",
    "parse_prompt",
    "validate_prompt",
]
