"""Calling a node: input assembly, list mapping, and merging the results (spec 5.3)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from executor.errors import NodeContractError
from executor.graph_utils import ExecutionBlocker, is_link

InputData = dict[str, list[Any]]


def find_blocker(values: Mapping[str, Any], whole_lists: bool) -> ExecutionBlocker | None:
    """Return the first ``ExecutionBlocker`` among one call's inputs (or among whole lists)."""
    for value in values.values():
        items = value if whole_lists and isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, ExecutionBlocker):
                return item
    return None


def call_slices(data: InputData, input_is_list: bool) -> list[dict[str, Any]]:
    """Return the keyword arguments of each FUNCTION call (one call per list element, or one call)."""
    if input_is_list:
        return [dict(data)]
    if not data:
        return [{}]
    count = max(len(v) for v in data.values())
    if count == 1 and all(len(v) == 1 for v in data.values()):
        return [{k: v[0] for k, v in data.items()}]
    if count == 0:
        return [{}]
    return [{k: (v[i] if i < len(v) else v[-1]) if v else None for k, v in data.items()} for i in range(count)]


class CallResult:
    """The results of all calls of one node: per-call result tuples, UI dicts and expansion graphs."""

    def __init__(self) -> None:
        self.results: list[tuple[Any, ...]] = []
        self.uis: list[dict[str, Any]] = []
        self.expansions: list[dict[str, Any] | None] = []

    @property
    def has_expansion(self) -> bool:
        """Whether any call returned an ``expand`` graph."""
        return any(g is not None for g in self.expansions)


def _as_tuple(value: Any, node_id: str, class_type: str, n_outputs: int) -> tuple[Any, ...]:
    if isinstance(value, ExecutionBlocker):
        return (value,) * n_outputs
    if value is None:
        if n_outputs == 0:
            return ()
        raise NodeContractError(f"Node '#{node_id}' ({class_type}) returned None but RETURN_TYPES declares "
                                f"{n_outputs} output(s); return a tuple with one value per output")
    if not isinstance(value, (tuple, list)):
        raise NodeContractError(f"Node '#{node_id}' ({class_type}) returned {type(value).__name__}; return a "
                                "tuple (note the trailing comma in `return (value,)`) or a dict with 'result'/'ui'")
    if len(value) < n_outputs:
        raise NodeContractError(f"Node '#{node_id}' ({class_type}) returned {len(value)} value(s) but "
                                f"RETURN_TYPES declares {n_outputs}; return one value per output")
    return tuple(value)


def collect_returns(returns: list[Any], node_id: str, class_type: str, n_outputs: int) -> CallResult:
    """Sort each call's return value into result tuple, UI and expansion graph."""
    out = CallResult()
    for ret in returns:
        if isinstance(ret, dict):
            ui = ret.get("ui")
            if ui is not None:
                if not isinstance(ui, dict):
                    raise NodeContractError(f"Node '#{node_id}' ({class_type}) returned a 'ui' that is not a dict")
                out.uis.append(ui)
            if "expand" in ret:
                out.expansions.append(ret["expand"])
                out.results.append(_as_tuple(ret.get("result", ()), node_id, class_type, n_outputs))
            elif "result" in ret:
                out.expansions.append(None)
                out.results.append(_as_tuple(ret["result"], node_id, class_type, n_outputs))
        else:
            out.expansions.append(None)
            out.results.append(_as_tuple(ret, node_id, class_type, n_outputs))
    return out


def merge_outputs(results: list[tuple[Any, ...]], output_is_list: tuple[bool, ...],
                  resolve_link: Callable[[Any], list[Any]] | None = None) -> list[list[Any]]:
    """Merge per-call results into one list per output slot (``OUTPUT_IS_LIST`` slots concatenate).

    With ``resolve_link`` (expanded nodes), a link in a result is replaced by its producer's output list.
    """
    if not results:
        return []
    n = len(output_is_list) or max(len(r) for r in results)
    merged: list[list[Any]] = [[] for _ in range(n)]
    for result in results:
        for j in range(min(n, len(result))):
            value = result[j]
            if resolve_link is not None and is_link(value):
                merged[j].extend(resolve_link(value))
            elif j < len(output_is_list) and output_is_list[j] and isinstance(value, (list, tuple)):
                merged[j].extend(value)
            else:
                merged[j].append(value)
    return merged


def merge_ui(uis: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Merge the UI dicts of all calls by concatenating the lists under each key."""
    if not uis:
        return None
    merged: dict[str, Any] = {}
    for ui in uis:
        for key, value in ui.items():
            merged.setdefault(key, []).extend(value if isinstance(value, (list, tuple)) else [value])
    return merged


def format_value(value: Any) -> Any:
    """Format one input value for ``execution_error.current_inputs``."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)
