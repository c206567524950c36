"""The executor's exception tree (one tree for the whole package).

::

    LoomExecutorError                     base of everything the executor raises
    ├── RegistrationError                 a node class breaks the V1 contract (names class and problem)
    │   └── DuplicateNodeError            a node id is already registered (names both sources)
    ├── PromptValidationError             a prompt cannot run; ``.to_wire()`` is ComfyUI's 400 body
    ├── ExecutionInterrupted              raised inside a run when an interrupt was requested
    │                                     (alias ``InterruptedError_`` for the architecture contract)
    ├── DependencyCycleError              the graph has a cycle (reported as ``graph.DependencyCycleError``)
    ├── NodeContractError                 a node returned something the contract does not allow
    └── GraphRunError                     executor.testing: a test graph failed (carries the error event)

``PromptExecutor.execute`` never raises node failures: they become ``execution_error`` events and an
``ExecutionOutcome`` with ``status="error"``.
"""
from __future__ import annotations

from typing import Any


class LoomExecutorError(Exception):
    """Base class of all executor errors."""


class RegistrationError(LoomExecutorError):
    """A node class cannot be registered; the message names the class and how to fix it."""

    def __init__(self, message: str, *, node_id: str | None = None,
                 failures: list[RegistrationError] | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.failures: list[RegistrationError] = failures or []


class DuplicateNodeError(RegistrationError):
    """A node id is already registered; the existing entry is kept."""

    def __init__(self, node_id: str, existing_source: str, new_source: str) -> None:
        super().__init__(
            f"Node id {node_id!r} from {new_source!r} collides with the node already registered by "
            f"{existing_source!r}; the existing node is kept. Rename the class key in "
            f"{new_source}'s NODE_CLASS_MAPPINGS (e.g. prefix it with the pack name) or remove one of the packs.",
            node_id=node_id,
        )
        self.existing_source = existing_source
        self.new_source = new_source


class PromptValidationError(LoomExecutorError):
    """The prompt failed validation; ``to_wire()`` is the exact ComfyUI 400 response body."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> None:
        message = str(error.get("message", "invalid prompt"))
        details = str(error.get("details", ""))
        super().__init__(f"{message}: {details}" if details else message)
        self.error = error
        self.node_errors: dict[str, Any] = node_errors or {}

    @property
    def type(self) -> str:
        """The top-level error ``type`` string (``invalid_prompt``, ``prompt_no_outputs``, ...)."""
        return str(self.error.get("type", ""))

    def to_wire(self) -> dict[str, Any]:
        """Return ``{"error": {...}, "node_errors": {...}}`` as sent with HTTP 400."""
        return {"error": self.error, "node_errors": self.node_errors}


class ExecutionInterrupted(LoomExecutorError):
    """Raised by ``check_interrupt()`` when /interrupt was requested; aborts the run."""


InterruptedError_ = ExecutionInterrupted


class DependencyCycleError(LoomExecutorError):
    """The nodes still pending form a dependency cycle."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__("Dependency cycle detected between nodes " + ", ".join(f"#{n}" for n in nodes)
                         + "; remove one of the links so the graph flows one way.")
        self.nodes = nodes


class NodeContractError(LoomExecutorError):
    """A node returned a value the V1 contract does not allow (wrong arity, wrong type)."""


class GraphRunError(LoomExecutorError):
    """``executor.testing`` helpers: the graph failed or was interrupted; ``.payload`` is the event."""

    def __init__(self, payload: dict[str, Any]) -> None:
        node = payload.get("node_id")
        kind = payload.get("exception_type", "interrupted")
        message = payload.get("exception_message", "execution interrupted")
        tb = "".join(payload.get("traceback") or [])
        super().__init__(f"Node '#{node}' ({payload.get('node_type')}) failed with {kind}: {message}"
                         + (f"\n{tb}" if tb else ""))
        self.payload = payload
