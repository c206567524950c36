"""Prompt validation (spec 4): prompt-level checks, per-output recursive checks, cycles, aggregation.

Beyond ComfyUI: every problem of the prompt is collected (not only the first), cycles are reported as
``dependency_cycle`` naming the nodes in the cycle, and ``extra_checks`` let other layers add graph-level
checks. The wire shape of the 400 body is unchanged.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from executor.checks import ErrorDict, check_node
from executor.contract import is_output_node
from executor.errors import PromptValidationError
from executor.graph_utils import is_link
from executor.prompt import Prompt, parse_prompt_collect, prompt_error
from executor.registry import NodeRegistry


@dataclass(frozen=True)
class NodeError:
    """One problem found by an extra check, attached to ``node_id``."""

    node_id: str
    type: str
    message: str
    details: str = ""
    extra_info: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> ErrorDict:
        """Return the ``{"type", "message", "details", "extra_info"}`` dict of ``node_errors``."""
        return {"type": self.type, "message": self.message, "details": self.details,
                "extra_info": dict(self.extra_info)}


ExtraCheck = Callable[[Prompt, NodeRegistry], Sequence[NodeError]]


@dataclass
class ValidatedPrompt:
    """A prompt that may run: normalised prompt, output node ids to execute, warnings, partial errors."""

    prompt: Prompt
    outputs: list[str]
    warnings: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


def _check_classes(registry: NodeRegistry, prompt: Prompt, problems: dict[str, Any]) -> None:
    for node_id, node in prompt.items():
        class_type = node["class_type"]
        if class_type not in registry:
            title = (node.get("_meta") or {}).get("title") if isinstance(node.get("_meta"), dict) else None
            problems[node_id] = {"errors": [{
                "type": "missing_node_type",
                "message": f"Node '{class_type}' not found. The custom node may not be installed.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {"node_id": node_id, "class_type": class_type, "node_title": title or class_type},
            }], "dependent_outputs": [], "class_type": class_type}
    if problems:
        raise prompt_error(problems)


def _links(node: Mapping[str, Any]) -> Iterable[str]:
    for value in node["inputs"].values():
        if is_link(value):
            yield value[0]


def _reachable(prompt: Prompt, outputs: list[str]) -> dict[str, list[str]]:
    """Return ``{node: [producer ids present in the prompt]}`` for every node feeding an output."""
    deps: dict[str, list[str]] = {}
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in deps:
            continue
        producers = [p for p in _links(prompt[node_id]) if p in prompt]
        deps[node_id] = producers
        stack.extend(p for p in producers if p not in deps)
    return deps


def find_cycles(deps: Mapping[str, list[str]]) -> list[list[str]]:
    """Return the strongly connected components that are cycles (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in deps:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = deps.get(node, [])
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in deps.get(node, []):
                    cycles.append(component[::-1])
    return cycles


def _ancestors(deps: Mapping[str, list[str]], start: str) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for producer in deps.get(stack.pop(), []):
            if producer not in seen:
                seen.add(producer)
                stack.append(producer)
    return seen


def _exception_error(ex: Exception, is_output: bool) -> ErrorDict:
    tb = traceback.format_tb(ex.__traceback__)
    if is_output:
        return {"type": "exception_during_validation", "message": "Exception when validating node",
                "details": str(ex), "extra_info": {"exception_type": type(ex).__name__, "traceback": tb}}
    return {"type": "exception_during_inner_validation", "message": "Exception when validating inner node",
            "details": str(ex), "extra_info": {"exception_message": str(ex),
                                               "exception_type": type(ex).__name__, "traceback": tb}}


def validate_prompt(registry: NodeRegistry, prompt: Any, partial_execution_targets: Sequence[str] | None = None,
                    extra_checks: Sequence[ExtraCheck] | None = None) -> ValidatedPrompt:
    """Validate an API-format prompt; return a ``ValidatedPrompt`` or raise ``PromptValidationError``.

    Only nodes feeding the output nodes (or the ``partial_execution_targets`` among them) are checked, and
    ``extra_checks`` see only those nodes (``callable(prompt, registry) -> [NodeError]``).
    Literal values are coerced in the returned (normalised) copy; the input is not modified.
    """
    parsed, problems = parse_prompt_collect(prompt)
    _check_classes(registry, parsed, problems)
    warnings: list[str] = []
    if isinstance(partial_execution_targets, str):
        partial_execution_targets = [partial_execution_targets]
    targets = None if partial_execution_targets is None else {str(t) for t in partial_execution_targets}
    outputs = [n for n, node in parsed.items() if is_output_node(registry.get(node["class_type"]))
               and (targets is None or n in targets)]
    if targets is not None:
        for t in sorted(targets - set(outputs)):
            warnings.append(f"partial execution target '#{t}' is not an output node of this prompt; ignored")
    if not outputs:
        raise PromptValidationError({"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                                     "details": "", "extra_info": {}}, {})
    deps = _reachable(parsed, outputs)
    errors: dict[str, list[ErrorDict]] = {}
    for cycle in find_cycles(deps):
        path = " -> ".join(f"#{n}" for n in [*cycle, cycle[0]])
        for node_id in cycle:
            errors.setdefault(node_id, []).append({
                "type": "dependency_cycle", "message": "Dependency cycle detected",
                "details": f"{path}; remove one of these links so the graph flows one way",
                "extra_info": {"cycle": list(cycle)}})
    output_set = set(outputs)
    for node_id in deps:
        try:
            own = check_node(registry, parsed, node_id)
        except Exception as ex:
            own = [_exception_error(ex, node_id in output_set)]
        if own:
            errors.setdefault(node_id, []).extend(own)
    reachable = {node_id: parsed[node_id] for node_id in parsed if node_id in deps}
    for check in extra_checks or ():
        try:
            found = list(check(reachable, registry))
        except Exception as ex:
            name = getattr(check, "__name__", repr(check))
            found = [NodeError(o, "exception_during_validation", f"Extra check {name} raised", str(ex),
                               {"exception_type": type(ex).__name__}) for o in outputs]
        for problem in found:
            errors.setdefault(problem.node_id, []).append(problem.to_wire())
    return _aggregate(registry, parsed, outputs, deps, errors, warnings)


def _aggregate(registry: NodeRegistry, parsed: Prompt, outputs: list[str], deps: dict[str, list[str]],
               errors: dict[str, list[ErrorDict]], warnings: list[str]) -> ValidatedPrompt:
    node_errors: dict[str, Any] = {}
    good: list[str] = []
    order = {node_id: i for i, node_id in enumerate(parsed)}
    for output in outputs:
        bad = [n for n in _ancestors(deps, output) if n in errors] if errors else []
        if not bad:
            good.append(output)
            continue
        for node_id in sorted(bad, key=order.__getitem__):
            entry = node_errors.setdefault(node_id, {"errors": errors[node_id], "dependent_outputs": [],
                                                     "class_type": parsed[node_id]["class_type"]})
            entry["dependent_outputs"].append(output)
    if not good:
        lines = [f"{e['message']}: {e['details']}" for entry in node_errors.values() for e in entry["errors"]]
        raise PromptValidationError({"type": "prompt_outputs_failed_validation",
                                     "message": "Prompt outputs failed validation",
                                     "details": "\n".join(lines), "extra_info": {}}, node_errors)
    return ValidatedPrompt(prompt=parsed, outputs=good, warnings=warnings, node_errors=node_errors)
