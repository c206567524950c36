"""Async FUNCTIONs run as tasks beside other nodes (spec 5.2 "Async nodes")."""
from __future__ import annotations

import asyncio
from typing import Any

from executor_fixture_nodes import CallLog

from executor import CollectingSink, InterruptFlag, NodeRegistry, PromptExecutor, current


def _async_nodes(reg: NodeRegistry) -> dict[str, Any]:
    shared: dict[str, Any] = {}

    class Waiter:
        """Waits (up to 2 s) for Setter: only possible if both run concurrently."""

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        async def run(self) -> tuple[str]:
            ctx = current()
            assert ctx is not None and ctx.node_id == "w"  # the context follows the task
            event = shared.setdefault("event", asyncio.Event())
            await asyncio.wait_for(event.wait(), 2.0)
            return ("released",)

    class Setter:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        async def run(self) -> tuple[str]:
            shared.setdefault("event", asyncio.Event()).set()
            return ("set",)

    class SlowFail:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        async def run(self) -> tuple[str]:
            await asyncio.sleep(0)
            raise ConnectionError("api down")

    class Forever:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        async def run(self) -> tuple[str]:
            shared["started"] = True
            ctx = current()
            assert ctx is not None
            ctx.progress(0, 1)
            await asyncio.sleep(30)
            return ("never",)

    for cls in (Waiter, Setter, SlowFail, Forever):
        reg.register(cls.__name__, cls)
    return shared


def test_async_nodes_run_concurrently_with_other_nodes(nodes: tuple[NodeRegistry, CallLog]) -> None:
    reg, log = nodes
    _async_nodes(reg)
    prompt = {"w": {"class_type": "Waiter", "inputs": {}},
              "1": {"class_type": "Show", "inputs": {"value": ["w", 0]}},
              "c": {"class_type": "Const", "inputs": {"value": 3}},
              "2": {"class_type": "Show", "inputs": {"value": ["c", 0]}},
              "s": {"class_type": "Setter", "inputs": {}},
              "3": {"class_type": "Show", "inputs": {"value": ["s", 0]}}}
    sink = CollectingSink()
    outcome = PromptExecutor(reg).execute(prompt, "p", {}, None, sink=sink)
    assert outcome.status == "success", outcome.error
    assert outcome.outputs["1"] == {"value": ["released"]} and outcome.outputs["3"] == {"value": ["set"]}
    executing = [e["node"] for e in sink.of("executing")]
    assert executing.count("w") == 1  # resumed without a second "executing"
    assert executing.index("w") < executing.index("s")  # "w" started first ...
    assert outcome.executed.index("s") < outcome.executed.index("w")  # ... and finished after "s" released it
    assert "w" in outcome.timings


def test_async_failure_is_reported_with_its_node(nodes: tuple[NodeRegistry, CallLog]) -> None:
    reg, _ = nodes
    _async_nodes(reg)
    outcome = PromptExecutor(reg).execute({"f": {"class_type": "SlowFail", "inputs": {}},
                                           "1": {"class_type": "Show", "inputs": {"value": ["f", 0]}}}, "p", {}, None)
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error["node_id"] == "f" and outcome.error["exception_type"] == "ConnectionError"


def test_interrupt_while_waiting_for_async_work(nodes: tuple[NodeRegistry, CallLog]) -> None:
    reg, _ = nodes
    shared = _async_nodes(reg)
    flag = InterruptFlag()

    class Trip(CollectingSink):
        def emit(self, event: str, data: dict[str, Any]) -> None:
            super().emit(event, data)
            if event == "progress" and data["node"] == "x":
                flag.set()

    prompt = {"x": {"class_type": "Forever", "inputs": {}},
              "1": {"class_type": "Show", "inputs": {"value": ["x", 0]}}}
    # the flag is set once "x" is awaiting; the executor notices it while waiting and cancels the task
    outcome = PromptExecutor(reg).execute(prompt, "p", {}, None, sink=Trip(), interrupt=flag)
    assert outcome.status == "interrupted" and shared.get("started") is True
    assert outcome.error is not None and outcome.error["node_id"] == "x"
