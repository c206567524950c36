"""ComfyUI's `execution` module for packs: prompt validation over Loom's validator, and the small helpers
packs import from it (`full_type_name`, `ExecutionResult`, `DuplicateNodeError`).

ComfyUI's executor internals (`PromptQueue`, `get_input_data`, the caches) are not provided: Loom's executor is a
different object, and a pack that patches those functions would patch nothing. A pack importing such a name fails
with an ImportError that its report names. `PromptExecutor` is there for packs that read its methods at import
(Impact Pack keeps `PromptExecutor.handle_execution_error`): making one, or calling a method, is refused.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

from app.compat._environment import handles_for
from executor import PromptValidationError
from executor import validate_prompt as _validate
from executor.errors import DuplicateNodeError

_loom = handles_for(__name__)  # this Loom instance's objects

__all__ = ["DuplicateNodeError", "ExecutionResult", "PromptExecutor", "full_type_name", "validate_prompt"]


class ExecutionResult(Enum):
    """ComfyUI's outcome of running one node."""

    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


def full_type_name(klass: type) -> str:
    """`module.QualName` of a class, as ComfyUI prints it in error messages."""
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


async def validate_prompt(prompt_id: Any, prompt: dict[str, Any], partial_execution_list: list[str] | None = None
                          ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    """ComfyUI's `(valid, error, output node ids, node_errors)` for `prompt`, by Loom's validator."""
    try:
        valid = _validate(_loom.registry, prompt, partial_execution_targets=partial_execution_list)
    except PromptValidationError as exc:
        wire = exc.to_wire()
        return False, wire.get("error"), [], dict(wire.get("node_errors") or {})
    return True, None, list(valid.outputs), dict(valid.node_errors)


def _executor_internal(name: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"execution.PromptExecutor.{name} is not provided by Loom: its executor "
                                  "(executor.PromptExecutor) is a different object")

    refused.__name__ = refused.__qualname__ = name
    return refused


class PromptExecutor:
    """ComfyUI's executor class, by name only (module docstring)."""

    __init__ = _executor_internal("__init__")
    reset = _executor_internal("reset")
    add_message = _executor_internal("add_message")
    handle_execution_error = _executor_internal("handle_execution_error")
    execute = _executor_internal("execute")
    execute_async = _executor_internal("execute_async")
