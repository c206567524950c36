"""A small stand-in for the executor contract (docs/architecture.md section 2) plus fixture nodes.

The server is tested against this fake so its tests run in milliseconds and do not depend on the graph
engine's internals; `test_real_executor.py` runs the same paths through the real `executor` package.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from executor import ExecutionOutcome, PromptValidationError


class FakeValidationError(PromptValidationError):
    """The fake validator's rejection: the executor's own exception type, so Loom treats it alike."""


class FakeInterrupted(Exception):
    pass


class InterruptFlag:
    def __init__(self) -> None:
        self._e = threading.Event()

    def set(self) -> None:
        self._e.set()

    def clear(self) -> None:
        self._e.clear()

    def is_set(self) -> bool:
        return self._e.is_set()


# ---------------------------------------------------------------------------------------- fixture nodes
class Const:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 1, "min": -100, "max": 100})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value: int) -> tuple[int]:
        return (value,)


class Add:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"a": ("INT",), "b": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a: int, b: int) -> tuple[int]:
        return (a + b,)


class Show:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, value: int) -> dict[str, Any]:
        return {"ui": {"text": [str(value)]}}


class Sleep:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",), "seconds": ("FLOAT", {"default": 0.1})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value: int, seconds: float, _interrupt: Any = None) -> tuple[int]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if _interrupt is not None and _interrupt.is_set():
                raise FakeInterrupted()
            time.sleep(0.01)
        return (value,)


class Fail:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value: int) -> tuple[int]:
        raise RuntimeError(f"fixture failure on {value}")


class PreviewRed:
    """Emits one preview image (a red square) and passes its input through to a ui output."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"
    PREVIEW = True

    def run(self, value: int) -> dict[str, Any]:
        return {"ui": {"text": [str(value)]}}


NODES = {"Const": Const, "Add": Add, "Show": Show, "Sleep": Sleep, "Fail": Fail, "PreviewRed": PreviewRed}


class FakeRegistry:
    def __init__(self, nodes: dict[str, type] | None = None) -> None:
        self._nodes = dict(nodes or NODES)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def get(self, name: str) -> type:
        return self._nodes[name]

    def names(self) -> list[str]:
        return list(self._nodes)

    def register(self, name: str, cls: type, **_: Any) -> None:
        self._nodes[name] = cls

    def object_info_for(self, name: str) -> dict[str, Any]:
        cls = self._nodes[name]
        inputs = cls.INPUT_TYPES()  # type: ignore[attr-defined]
        return {name: {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()},
                       "output": list(cls.RETURN_TYPES), "output_is_list": [False] * len(cls.RETURN_TYPES),
                       "output_name": list(cls.RETURN_TYPES), "name": name, "display_name": name,
                       "description": "", "python_module": "tests", "category": cls.CATEGORY,
                       "output_node": bool(getattr(cls, "OUTPUT_NODE", False))}}

    def object_info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._nodes:
            out.update(self.object_info_for(name))
        return out


@dataclass
class Validated:
    prompt: dict[str, Any]
    outputs: list[str]
    warnings: list[Any] = field(default_factory=list)


def _err(type_: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": {}}


def fake_validate(registry: FakeRegistry, prompt: dict[str, Any],
                  partial_execution_targets: list[str] | None = None) -> Validated:
    node_errors: dict[str, Any] = {}
    for nid, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise FakeValidationError(_err("invalid_prompt", "Cannot execute because a node is missing the "
                                           "class_type property.", f"Node ID '#{nid}'"), {})
        if node["class_type"] not in registry:
            raise FakeValidationError(_err("invalid_prompt", f"Cannot execute because node "
                                           f"{node['class_type']} does not exist.", f"Node ID '#{nid}'"), {})
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise FakeValidationError(_err("invalid_prompt", "inputs must be an object", f"Node ID '#{nid}'"), {})
        required = registry.get(node["class_type"]).INPUT_TYPES()["required"]  # type: ignore[attr-defined]
        missing = [k for k in required if k not in inputs and "default" not in (required[k][1:] or [{}])[0]]
        if missing:
            node_errors[nid] = {"errors": [_err("required_input_missing", "Required input is missing",
                                                missing[0])], "dependent_outputs": [nid],
                                "class_type": node["class_type"]}
    outputs = [nid for nid, n in prompt.items() if getattr(registry.get(n["class_type"]), "OUTPUT_NODE", False)]
    if partial_execution_targets is not None:
        outputs = [o for o in outputs if o in partial_execution_targets]
    if not outputs:
        raise FakeValidationError(_err("prompt_no_outputs", "Prompt has no outputs"), {})
    if node_errors:
        raise FakeValidationError(_err("prompt_outputs_failed_validation", "Prompt outputs failed validation"),
                                  node_errors)
    return Validated(prompt, outputs)


Outcome = ExecutionOutcome  # the fake executor returns the real result type


class FakeExecutor:
    """Runs a validated prompt depth-first, emitting ComfyUI's events through the sink."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def execute(self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any],
                execute_outputs: list[str], *, sink: Any, interrupt: Any) -> Outcome:
        out = Outcome("success")

        def emit(event: str, data: dict[str, Any], keep: bool = False) -> None:
            data = {**data, "prompt_id": prompt_id}
            if keep:
                data["timestamp"] = int(time.time() * 1000)
                out.messages.append((event, data))
            sink.emit(event, data)

        emit("execution_start", {}, keep=True)
        emit("execution_cached", {"nodes": []}, keep=True)
        values: dict[str, tuple[Any, ...]] = {}

        def run(nid: str) -> tuple[Any, ...]:
            if nid in values:
                return values[nid]
            node = prompt[nid]
            kwargs = {}
            for k, v in node.get("inputs", {}).items():
                kwargs[k] = run(v[0])[v[1]] if isinstance(v, list) else v
            if interrupt.is_set():
                raise FakeInterrupted()
            cls = self.registry.get(node["class_type"])
            emit("executing", {"node": nid, "display_node": nid})
            t0 = time.perf_counter()
            if cls is Sleep:
                kwargs["_interrupt"] = interrupt
            if getattr(cls, "PREVIEW", False):
                from PIL import Image

                sink.preview(prompt_id, nid, Image.new("RGB", (640, 320), (255, 0, 0)))
            result = getattr(cls(), cls.FUNCTION)(**kwargs)  # type: ignore[attr-defined]
            out.timings[nid] = time.perf_counter() - t0
            out.executed.append(nid)
            if isinstance(result, dict):
                out.outputs[nid] = result["ui"]
                out.meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                emit("executed", {"node": nid, "display_node": nid, "output": result["ui"]})
                result = result.get("result", ())
            values[nid] = tuple(result)
            return values[nid]

        current = None
        try:
            for nid in execute_outputs:
                current = nid
                run(nid)
        except FakeInterrupted:
            out.status = "interrupted"
            emit("execution_interrupted", {"node_id": current, "node_type": "?", "executed": out.executed},
                 keep=True)
            return out
        except Exception as exc:
            out.status = "error"
            out.error = {"exception_message": str(exc)}
            emit("execution_error", {"node_id": current, "node_type": "?", "executed": out.executed,
                                     "exception_message": str(exc), "exception_type": type(exc).__name__,
                                     "traceback": [], "current_inputs": {}, "current_outputs": []}, keep=True)
            return out
        emit("execution_success", {}, keep=True)
        return out
