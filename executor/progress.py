"""Per-prompt progress states and the ``progress_state`` event (spec 2.2)."""
from __future__ import annotations

from typing import Any

from executor.dynprompt import DynamicPrompt
from executor.events import EventSink


class ProgressStates:
    """Every non-pending node's ``{value, max, state, ids}``; each ``progress_state`` carries all of them.

    A node's "finished" state travels with the next node's "running" state (or the end of the run): one
    ``progress_state`` per node instead of two, since each message repeats every node seen so far.
    """

    def __init__(self, prompt_id: str, dyn: DynamicPrompt, sink: EventSink) -> None:
        self._prompt_id = prompt_id
        self._dyn = dyn
        self._sink = sink
        self.states: dict[str, dict[str, Any]] = {}
        self._unsent = False

    def set(self, node_id: str, state: str, value: float | None = None, total: float | None = None,
            emit: bool = True) -> None:
        """Update ``node_id`` and emit ``progress_state`` (``emit=False``: with the next update)."""
        old = self.states.get(node_id)
        top = float(total) if total is not None else 1.0 if old is None else old["max"]
        if value is not None:
            val = float(value)
        else:
            val = top if state == "finished" else 0.0 if old is None else old["value"]
        if old is None:
            dyn = self._dyn
            entry = {"value": val, "max": top, "state": state, "node_id": node_id, "prompt_id": self._prompt_id,
                     "display_node_id": dyn.get_display_node_id(node_id),
                     "parent_node_id": dyn.get_parent_node_id(node_id), "real_node_id": dyn.get_real_node_id(node_id)}
        else:
            entry = {**old, "value": val, "max": top, "state": state}
        self.states[node_id] = entry
        self._unsent = not emit
        if emit:
            self._send()

    def flush(self) -> None:
        """Emit an update held back by ``set(..., emit=False)``."""
        if self._unsent:
            self._send()

    def _send(self) -> None:
        self._unsent = False
        self._sink.emit("progress_state", {"prompt_id": self._prompt_id, "nodes": dict(self.states)})
