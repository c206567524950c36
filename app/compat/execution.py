"""ComfyUI's `execution` module for packs: prompt validation over Loom's validator, and the small helpers
packs import from it (`full_type_name`, `ExecutionResult`, `DuplicateNodeError`).

ComfyUI's executor internals (`PromptExecutor`, `PromptQueue`, `get_input_data`, the caches) are not
provided: Loom's executor is a different object, and a pack that patches those functions would patch
nothing. A pack importing such a name fails with an ImportError that its report names.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

from app.compat._environment import handles_for
from executor import PromptValidationError
from executor import validate_prompt as _validate
from executor.errors import DuplicateNodeError

_loom = handles_for(__name__)  # this Loom instance's objects

__all__ = ["DuplicateNodeError", "ExecutionResult", "full_type_name", "validate_prompt"]


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
