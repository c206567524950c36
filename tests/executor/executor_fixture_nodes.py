"""Pure-Python fixture nodes for executor tests; ``make_nodes()`` gives fresh classes and a call log."""
from __future__ import annotations

import asyncio
from typing import Any

from executor.context import current
from executor.graph_utils import ExecutionBlocker, GraphBuilder


class CallLog:
    """Records which fixture node ids ran, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def count(self, node_id: str) -> int:
        return self.calls.count(node_id)


def make_nodes() -> tuple[dict[str, type], CallLog]:
    """Return fresh fixture node classes (so class state never leaks between tests) and their log."""
    log = CallLog()

    class Base:
        CATEGORY = "test"

        def record(self) -> None:
            ctx = current()
            assert ctx is not None
            log.calls.append(ctx.node_id)

    class Const(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {"default": 0, "min": -100, "max": 100})}}

        def run(self, value: int) -> tuple[int]:
            self.record()
            return (value,)

    class Add(Base):
        RETURN_TYPES = ("INT",)
        RETURN_NAMES = ("sum",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})}}

        def run(self, a: int, b: int) -> tuple[int]:
            self.record()
            return (a + b,)

    class Show(Base):
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("*",)}}

        def run(self, value: Any) -> dict[str, Any]:
            self.record()
            return {"ui": {"value": [value]}}

    class Text(Base):
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"text": ("STRING", {"default": ""})},
                    "optional": {"mode": (["plain", "upper"], {"default": "plain"})}}

        def run(self, text: str, mode: str = "plain") -> tuple[str]:
            self.record()
            return (text.upper() if mode == "upper" else text,)

    class Fail(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {"default": 0})}}

        def run(self, value: int) -> tuple[int]:
            self.record()
            raise ValueError(f"boom {value}")

    class Switch(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"cond": ("BOOLEAN", {"default": True}),
                                 "on_true": ("INT", {"lazy": True}), "on_false": ("INT", {"lazy": True})}}

        def check_lazy_status(self, cond: bool, on_true: Any = None, on_false: Any = None) -> list[str]:
            return ["on_true"] if cond else ["on_false"]

        def run(self, cond: bool, on_true: Any = None, on_false: Any = None) -> tuple[Any]:
            self.record()
            return (on_true if cond else on_false,)

    class Range(Base):
        RETURN_TYPES = ("INT",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"n": ("INT", {"default": 3, "min": 0})}}

        def run(self, n: int) -> tuple[list[int]]:
            self.record()
            return (list(range(n)),)

    class Total(Base):
        RETURN_TYPES = ("INT",)
        INPUT_IS_LIST = True
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"values": ("INT",)}}

        def run(self, values: list[int]) -> tuple[int]:
            self.record()
            return (sum(values),)

    class Gate(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT",), "open": ("BOOLEAN", {"default": True}),
                                 "message": ("STRING", {"default": ""})}}

        def run(self, value: int, open: bool, message: str) -> tuple[Any]:
            self.record()
            return (value if open else ExecutionBlocker(message or None),)

    class Repeat(Base):
        """Expands into a chain of Add nodes adding ``value`` ``times`` times (node expansion)."""

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT",), "times": ("INT", {"default": 2, "min": 1, "max": 10})}}

        def run(self, value: int, times: int) -> dict[str, Any]:
            self.record()
            graph = GraphBuilder()
            total = graph.node("Const", value=0)
            for _ in range(times):
                total = graph.node("Add", a=total.out(0), b=value)
            return {"result": (total.out(0),), "expand": graph.finalize()}

    class Steps(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"steps": ("INT", {"default": 3, "min": 1, "max": 100})}}

        def run(self, steps: int) -> tuple[int]:
            self.record()
            ctx = current()
            assert ctx is not None
            for i in range(steps):
                ctx.progress(i + 1, steps)
            return (steps,)

    class Volatile(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {"default": 0})}}

        @classmethod
        def IS_CHANGED(cls, value: int) -> float:
            return float("nan")

        def run(self, value: int) -> tuple[int]:
            self.record()
            return (value,)

    class Fingerprint(Base):
        """IS_CHANGED returns a class-level version the test bumps (like a file hash)."""

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        version = "v1"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {"default": 0})}}

        @classmethod
        def IS_CHANGED(cls, value: int) -> str:
            return cls.version

        def run(self, value: int) -> tuple[int]:
            self.record()
            return (value,)

    class Unique(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        NOT_IDEMPOTENT = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {"default": 0})}}

        def run(self, value: int) -> tuple[int]:
            self.record()
            return (value,)

    class AsyncDouble(Base):
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT",)}}

        async def run(self, value: int) -> tuple[int]:
            self.record()
            await asyncio.sleep(0)
            return (value * 2,)

    class Picky(Base):
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"name": (["a.png", "b.png"],), "count": ("INT", {"default": 1, "min": 0, "max": 5})}}

        @classmethod
        def VALIDATE_INPUTS(cls, name: str) -> bool | str:
            return True if name.endswith(".png") else f"{name} is not a png"

        def run(self, name: str, count: int) -> tuple[str]:
            self.record()
            return (name * count,)

    class Hidden(Base):
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}, "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID",
                                               "extra_pnginfo": "EXTRA_PNGINFO", "dynprompt": "DYNPROMPT"}}

        def run(self, prompt: Any, unique_id: str, extra_pnginfo: Any, dynprompt: Any) -> tuple[str]:
            self.record()
            return (f"{unique_id}:{sorted(prompt)}:{extra_pnginfo}:{dynprompt.get_node(unique_id)['class_type']}",)

    classes = {c.__name__: c for c in (Const, Add, Show, Text, Fail, Switch, Range, Total, Gate, Repeat, Steps,
                                       Volatile, Fingerprint, Unique, AsyncDouble, Picky, Hidden)}
    return classes, log
