"""The API ("prompt") format: parsing and normalising a prompt dict (spec 3.1)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.errors import PromptValidationError

Prompt = dict[str, dict[str, Any]]


def unwrap_value(value: Any) -> Any:
    """Return the list inside a ``{"__value__": [...]}`` literal wrapper, else ``value`` unchanged."""
    if isinstance(value, dict) and "__value__" in value and len(value) == 1:
        return value["__value__"]
    return value


def _node_error(node_id: str, class_type: Any, type_: str, message: str, details: str) -> dict[str, Any]:
    return {
        "errors": [{"type": type_, "message": message, "details": details, "extra_info": {"node_id": node_id}}],
        "dependent_outputs": [],
        "class_type": class_type if isinstance(class_type, str) else None,
    }


def parse_prompt(data: Any) -> Prompt:
    """Check the structure of an API-format prompt and return a normalised copy.

    Node ids become strings and ``inputs`` defaults to ``{}``; ``{"__value__": [...]}`` literal wrappers
    are kept (so a literal list can never be mistaken for a link) and unwrapped where values are used.
    Every structural problem is collected; the first one is the top-level ``invalid_prompt`` error and
    all of them are listed in ``node_errors``.
    """
    parsed, problems = parse_prompt_collect(data)
    if problems:
        raise prompt_error(problems)
    return parsed


def prompt_error(problems: dict[str, Any]) -> PromptValidationError:
    """The error for prompt-level ``problems`` (``{node id: node_errors entry}``): the first is top-level."""
    first = next(iter(problems.values()))["errors"][0]
    extra = dict(first["extra_info"]) if first["type"] == "missing_node_type" else {}
    error = {"type": first["type"], "message": first["message"], "details": first["details"], "extra_info": extra}
    if len(problems) > 1:
        error["details"] = "; ".join(p["errors"][0]["details"] for p in problems.values())
    return PromptValidationError(error, problems)


def parse_prompt_collect(data: Any) -> tuple[Prompt, dict[str, Any]]:
    """Like ``parse_prompt`` but return ``(well-formed nodes, {node id: problem})`` instead of raising."""
    if not isinstance(data, Mapping):
        raise PromptValidationError({
            "type": "invalid_prompt", "message": "Cannot execute because the prompt is not a JSON object.",
            "details": f"Got {type(data).__name__}; send {{\"<node id>\": {{\"class_type\": ..., \"inputs\": {{}}}}}}",
            "extra_info": {}})
    out: Prompt = {}
    problems: list[tuple[str, dict[str, Any]]] = []
    for raw_id, node in data.items():
        node_id = str(raw_id)
        if not isinstance(node, Mapping):
            problems.append((node_id, _node_error(
                node_id, None, "invalid_prompt", "Cannot execute because a node is not a JSON object.",
                f"Node ID '#{node_id}'")))
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            problems.append((node_id, _node_error(
                node_id, None, "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.", f"Node ID '#{node_id}'")))
            continue
        inputs = node.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            problems.append((node_id, _node_error(
                node_id, class_type, "invalid_prompt", "Cannot execute because a node's inputs are not an object.",
                f"Node ID '#{node_id}'")))
            continue
        normalised = dict(node)
        normalised["inputs"] = {str(k): v for k, v in inputs.items()}
        out[node_id] = normalised
    return out, dict(problems)
