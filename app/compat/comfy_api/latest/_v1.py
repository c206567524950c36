"""Adapt a V3 `io.ComfyNode` subclass to a V1 node class, so the executor runs it unchanged."""
from __future__ import annotations

import inspect
from typing import Any

from comfy_api.latest.io import ComfyNode, Hidden, HiddenHolder, NodeOutput, Schema

from executor.graph_utils import ExecutionBlocker

_HIDDEN_NAMES = {member.value: member.name for member in Hidden}


def _resolve(value: Any) -> Any:
    if inspect.isawaitable(value):
        from app.compat._node_checks import run_sync

        return run_sync(value)
    return value


def _overrides(cls: type, name: str) -> bool:
    return getattr(cls, name, None) is not None and any(name in k.__dict__ for k in cls.__mro__ if k is not ComfyNode)


def _hidden(schema: Schema) -> dict[str, str]:
    wanted = list(schema.hidden)
    if schema.is_output_node:
        wanted += [Hidden.prompt, Hidden.extra_pnginfo]
    return {Hidden(h).name: Hidden(h).value for h in wanted}


def input_types(schema: Schema) -> dict[str, Any]:
    """V1 INPUT_TYPES dict of a schema."""
    spec: dict[str, Any] = {"required": {}, "optional": {}}
    for item in schema.inputs:
        spec["optional" if item.optional else "required"][item.id] = item.as_v1()
    hidden = _hidden(schema)
    if hidden:
        spec["hidden"] = hidden
    return spec


def _normalise(result: Any, n_outputs: int) -> Any:
    if isinstance(result, NodeOutput):
        if result.block_execution is not None:
            return tuple(ExecutionBlocker(result.block_execution) for _ in range(n_outputs))
        out: dict[str, Any] = {"result": tuple(result.args)}
        ui = result.ui
        if ui is not None:
            out["ui"] = ui.as_dict() if hasattr(ui, "as_dict") else dict(ui)
        if result.expand is not None:
            out["expand"] = result.expand
        return out
    if result is None:
        return ()
    return result  # a plain tuple or dict is V1 already


def to_v1(node: type[ComfyNode]) -> type:
    """Build the V1 class for `node`: attributes from its schema, FUNCTION calling `execute`."""
    schema = node.define_schema()
    if not isinstance(schema, Schema):
        raise TypeError(f"{node.__name__}.define_schema() must return io.Schema, got {type(schema).__name__}")
    outputs = list(schema.outputs)
    hidden_names = set(_hidden(schema))

    def call(v3: type[ComfyNode], method: str, kwargs: dict[str, Any]) -> Any:
        values = {k: kwargs.pop(k) for k in list(kwargs) if k in hidden_names}
        clone = type(v3.__name__, (v3,), {"hidden": HiddenHolder(values), "__module__": v3.__module__})
        return _resolve(getattr(clone, method)(**kwargs))

    def INPUT_TYPES(cls: type) -> dict[str, Any]:
        return input_types(node.define_schema())

    def execute_v3(self: Any, **kwargs: Any) -> Any:
        return _normalise(call(node, "execute", kwargs), len(outputs))

    namespace: dict[str, Any] = {
        "INPUT_TYPES": classmethod(INPUT_TYPES),
        "RETURN_TYPES": tuple(o.io_type for o in outputs),
        "RETURN_NAMES": tuple(o.display_name or o.id or o.io_type for o in outputs),
        "OUTPUT_IS_LIST": tuple(bool(o.is_output_list) for o in outputs),
        "FUNCTION": "execute_v3",
        "execute_v3": execute_v3,
        "CATEGORY": schema.category,
        "DESCRIPTION": schema.description,
        "OUTPUT_NODE": schema.is_output_node,
        "INPUT_IS_LIST": schema.is_input_list,
        "NOT_IDEMPOTENT": schema.not_idempotent,
        "DEPRECATED": schema.is_deprecated,
        "EXPERIMENTAL": schema.is_experimental,
        "_LOOM_NODE_ID": schema.node_id,
        "_LOOM_DISPLAY_NAME": schema.display_name or schema.node_id,
        "_LOOM_V3_CLASS": node,
        "__module__": node.__module__,
        "__doc__": node.__doc__,
    }
    if schema.is_api_node:
        namespace["API_NODE"] = True
    if any(o.tooltip for o in outputs):
        namespace["OUTPUT_TOOLTIPS"] = tuple(o.tooltip or "" for o in outputs)
    if _overrides(node, "validate_inputs"):
        namespace["VALIDATE_INPUTS"] = classmethod(lambda cls, **kw: call(node, "validate_inputs", kw))
    if _overrides(node, "fingerprint_inputs"):
        namespace["IS_CHANGED"] = classmethod(lambda cls, **kw: call(node, "fingerprint_inputs", kw))
    if _overrides(node, "check_lazy_status"):
        namespace["check_lazy_status"] = lambda self, **kw: call(node, "check_lazy_status", kw)
    return type(node.__name__, (), namespace)
