"""Per-node input checks of validation (spec 4.2 / 4.3): links, literals, ranges, COMBOs, VALIDATE_INPUTS."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from executor.blocking import run_blocking
from executor.contract import HIDDEN_VALUES, call_input_types, hidden_inputs, return_types
from executor.dynamic_inputs import dynamic_paths, dynamic_roots, expand, fold
from executor.prompt import Prompt, unwrap_value
from executor.registry import NodeRegistry, _jsonable

ErrorDict = dict[str, Any]
MATCHTYPE = "COMFY_MATCHTYPE_V3"


def types_compatible(received: Any, expected: Any) -> bool:
    """Return whether an output of type ``received`` may feed an input of type ``expected`` (non-strict)."""
    if isinstance(received, (list, tuple)) and expected == "COMBO":
        return True
    if not (received != expected):  # honours str subclasses such as an "any" type
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if "*" in (received, expected) or MATCHTYPE in (received, expected):
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def type_name(type_: Any) -> str | None:
    """A declared input type as a plain string (None for a COMBO list).

    Literal checks compare this, not the declared object: packs declare "any" types as ``str`` subclasses
    whose ``==`` says yes to every name, and such an input must not be treated as INT or COMBO.
    """
    return str.__str__(type_) if isinstance(type_, str) else None


def coerce_literal(type_: Any, value: Any) -> Any:
    """Convert a literal for a widget type like ComfyUI does (``int()``, ``float()``, ``str()``, ``bool()``)."""
    name = type_name(type_)
    if name == "INT":
        return int(value)
    if name == "FLOAT":
        return float(value)
    if name == "STRING":
        return str(value)
    if name == "BOOLEAN":
        return bool(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _err(type_: str, message: str, details: str, extra_info: dict[str, Any]) -> ErrorDict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info}


def _validator_params(cls: type) -> tuple[Callable[..., Any] | None, set[str], bool]:
    func = getattr(cls, "VALIDATE_INPUTS", None)
    if func is None or not callable(func):
        return None, set(), False
    params = inspect.signature(func).parameters.values()
    names = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return func, names, any(p.kind is p.VAR_KEYWORD for p in params)


def _check_literal(name: str, type_: Any, options: Mapping[str, Any], config: Any, val: Any) -> ErrorDict | None:
    lo, hi = options.get("min"), options.get("max")
    base = {"input_name": name, "input_config": config, "received_value": val}
    if lo is not None and _is_number(lo) and _is_number(val) and val < lo:
        return _err("value_smaller_than_min", f"Value {val} smaller than min of {lo}", name, base)
    if hi is not None and _is_number(hi) and _is_number(val) and val > hi:
        return _err("value_bigger_than_max", f"Value {val} bigger than max of {hi}", name, base)
    if isinstance(type_, (list, tuple)) or type_name(type_) == "COMBO":
        choices = list(type_) if isinstance(type_, (list, tuple)) else list(options.get("options") or [])
        if val not in choices:
            if len(choices) > 20:
                list_info, cfg = f"(list of length {len(choices)})", None
            else:
                list_info, cfg = str(choices), config
            return _err("value_not_in_list", "Value not in list", f"{name}: '{val}' not in {list_info}",
                        {"input_name": name, "input_config": cfg, "received_value": val})
    return None


def check_node(registry: NodeRegistry, prompt: Prompt, node_id: str) -> list[ErrorDict]:
    """Check every declared input of ``node_id``; coerce literals in place; return its errors."""
    node = prompt[node_id]
    cls = registry.get(node["class_type"])
    declared = call_input_types(cls)
    inputs: dict[str, Any] = node["inputs"]
    dynamic = bool(dynamic_roots(declared))
    # Autogrow / DynamicCombo inputs: check the flat (dotted) members the prompt addresses
    types = {**declared, **expand(declared, inputs)} if dynamic else declared
    vfunc, vnames, vkwargs = _validator_params(cls)
    takes_types = "input_types" in vnames
    received_types: dict[str, Any] = {}
    errors: list[ErrorDict] = []
    for category in ("required", "optional"):
        for name, spec in (types.get(category) or {}).items():
            type_ = spec[0]
            options: Mapping[str, Any] = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            config = _jsonable(spec)
            if name not in inputs:
                if category == "required":
                    errors.append(_err("required_input_missing", "Required input is missing", name,
                                       {"input_name": name}))
                continue
            val = inputs[name]
            if isinstance(val, (list, tuple)):
                err = _check_link(registry, prompt, name, type_, config, val, takes_types, received_types)
                if err is not None:
                    errors.append(err)
                continue
            wrapped = val is not unwrap_value(val)
            val = unwrap_value(val)
            try:
                val = coerce_literal(type_, val)
            except Exception as ex:
                errors.append(_err("invalid_input_type", f"Failed to convert an input value to a {type_} value",
                                   f"{name}, {val}, {ex}", {"input_name": name, "input_config": config,
                                                           "received_value": val, "exception_message": str(ex)}))
                continue
            inputs[name] = {"__value__": val} if wrapped else val
            if vkwargs or name in vnames:
                continue
            err = _check_literal(name, type_, options, config, val)
            if err is not None:
                errors.append(err)
    if vfunc is not None and (vnames or vkwargs):
        errors.extend(_run_validator(vfunc, vnames, vkwargs, node_id, prompt, types, received_types,
                                     declared if dynamic else None))
    return errors


def _check_link(registry: NodeRegistry, prompt: Prompt, name: str, type_: Any, config: Any, val: Any,
                takes_types: bool, received_types: dict[str, Any]) -> ErrorDict | None:
    base = {"input_name": name, "input_config": config, "received_value": _jsonable(val)}
    if len(val) != 2:
        return _err("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name, base)
    source, index = val
    if not isinstance(source, str) or source not in prompt:
        return _err("bad_linked_input", f"Bad linked input, node '#{source}' does not exist in the prompt",
                    f"{name}: link {list(val)!r} points at a missing node; reconnect the input", base)
    outputs = return_types(registry.get(prompt[source]["class_type"]))
    if not _is_number(index) or int(index) != index or not 0 <= int(index) < len(outputs):
        return _err("bad_linked_input",
                    f"Bad linked input, node '#{source}' has no output {index!r}",
                    f"{name}: node '#{source}' ({prompt[source]['class_type']}) has {len(outputs)} output(s)", base)
    received = outputs[int(index)]
    received_types[name] = received
    if not takes_types and not types_compatible(received, type_):
        return _err("return_type_mismatch", "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({type_})",
                    {"input_name": name, "input_config": config, "received_type": received,
                     "linked_node": _jsonable(val)})
    return None


def _run_validator(vfunc: Callable[..., Any], vnames: set[str], vkwargs: bool, node_id: str, prompt: Prompt,
                   types: Mapping[str, Any], received_types: dict[str, Any],
                   dynamic: Mapping[str, Any] | None) -> list[ErrorDict]:
    inputs = prompt[node_id]["inputs"]
    declared = {**(types.get("required") or {}), **(types.get("optional") or {})}
    values: dict[str, Any] = {}
    for name, val in inputs.items():
        if name in declared or name in vnames or vkwargs:
            values[name] = None if isinstance(val, (list, tuple)) else unwrap_value(val)
    for name, kind in hidden_inputs(types).items():
        if kind in HIDDEN_VALUES:  # a hidden input of an ordinary type keeps the value the prompt gives
            values[name] = {"PROMPT": prompt, "UNIQUE_ID": node_id}.get(kind)
    if dynamic is not None:  # the validator takes the nested dicts, as the node function does
        values = fold(values, dynamic_paths(dynamic, values))
    chosen = {k: v for k, v in values.items() if vkwargs or k in vnames}
    if "input_types" in vnames:
        chosen["input_types"] = received_types
    ret = vfunc(**chosen)
    if inspect.isawaitable(ret):  # an `async def VALIDATE_INPUTS`
        ret = run_blocking(ret)
    if ret is True:
        return []
    suffix = "" if ret is False else f" - {ret}"
    names = [k for k in chosen if k != "input_types"] or ["input_types"]
    return [_err("custom_validation_failed", "Custom validation failed for node", f"{n}{suffix}",
                 {"input_name": n}) for n in names]
