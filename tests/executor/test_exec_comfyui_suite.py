"""Executor behaviours ComfyUI's own execution suite pins down (issue 24), each on fixture nodes."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from executor_fixture_nodes import CallLog

from executor import CachePolicy, GraphBuilder, NodeRegistry, PromptExecutor, validate_prompt
from executor.errors import PromptValidationError
from executor.testing import run_graph

Reg = tuple[NodeRegistry, CallLog]


class _Echo:
    """Passes its one input through; records what it received."""

    seen: list[Any]
    RETURN_TYPES = ("*",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    def run(self, **kwargs: Any) -> dict[str, Any]:
        type(self).seen.append(kwargs)
        return {"ui": {"got": [repr(sorted(kwargs.items()))]}, "result": (kwargs.get("value"),)}


def _echo(reg: NodeRegistry, name: str, input_types: dict[str, Any], **attrs: Any) -> type:
    cls = type(name, (_Echo,), {"seen": [], "INPUT_TYPES": classmethod(lambda c: input_types), **attrs})
    reg.register(name, cls)
    return cls


def test_async_validate_inputs_is_awaited(nodes: Reg) -> None:
    reg, _ = nodes

    async def validate(cls: type, value: int) -> bool | str:
        await asyncio.sleep(0)
        return True if value <= 3 else f"value {value} is above 3"

    _echo(reg, "Checked", {"required": {"value": ("INT",)}}, VALIDATE_INPUTS=classmethod(validate))
    assert validate_prompt(reg, {"1": {"class_type": "Checked", "inputs": {"value": 2}}}).outputs == ["1"]
    with pytest.raises(PromptValidationError) as err:
        validate_prompt(reg, {"1": {"class_type": "Checked", "inputs": {"value": 5}}})
    (problem,) = err.value.node_errors["1"]["errors"]
    assert problem["type"] == "custom_validation_failed" and "value 5 is above 3" in problem["details"]

    async def from_a_server_handler() -> None:  # validation runs inside the server's event loop
        with pytest.raises(PromptValidationError):
            validate_prompt(reg, {"1": {"class_type": "Checked", "inputs": {"value": 9}}})

    asyncio.run(from_a_server_handler())


class _AnyType(str):
    """A pack's "any" type: says yes to every comparison, `==` included."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


def test_a_literal_on_an_any_typed_input_is_not_converted(nodes: Reg) -> None:
    reg, _ = nodes
    echo = _echo(reg, "AnyEcho", {"required": {"value": (_AnyType("*"), {})}})
    run = run_graph(reg, {"1": {"class_type": "AnyEcho", "inputs": {"value": "value1"}}})
    assert echo.seen == [{"value": "value1"}] and run.value("1") == "value1"


def test_a_hidden_input_of_an_ordinary_type_keeps_the_value_it_is_given(nodes: Reg) -> None:
    reg, _ = nodes
    spec = {"required": {}, "hidden": {"value": ("*",), "uid": "UNIQUE_ID"}}
    fingerprints: list[dict[str, Any]] = []

    def is_changed(cls: type, **kwargs: Any) -> str:
        fingerprints.append(kwargs)
        return "same"

    echo = _echo(reg, "HiddenEcho", spec, VALIDATE_INPUTS=classmethod(lambda cls, value=None, uid=None: True),
                 IS_CHANGED=classmethod(is_changed))
    prompt = {"c": {"class_type": "Const", "inputs": {"value": 7}},
              "linked": {"class_type": "HiddenEcho", "inputs": {"value": ["c", 0]}},
              "literal": {"class_type": "HiddenEcho", "inputs": {"value": 4}},
              "absent": {"class_type": "HiddenEcho", "inputs": {}}}
    run_graph(reg, prompt)
    by_node = {seen["uid"]: seen for seen in echo.seen}
    assert by_node["linked"] == {"value": 7, "uid": "linked"}
    assert by_node["literal"] == {"value": 4, "uid": "literal"}
    assert by_node["absent"] == {"uid": "absent"}  # not given: not passed, as in ComfyUI (never None)
    assert {"value": 4, "uid": "literal"} in fingerprints and {"uid": "absent"} in fingerprints


def test_a_cycle_made_by_expansion_is_blamed_on_the_expanding_node(nodes: Reg) -> None:
    reg, _ = nodes

    class MakesCycle:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> dict[str, Any]:
            graph = GraphBuilder()
            first = graph.node("Add", b=1)
            second = graph.node("Add", a=first.out(0), b=1)
            first.set_input("a", second.out(0))
            return {"result": (second.out(0),), "expand": graph.finalize()}

    reg.register("MakesCycle", MakesCycle)
    prompt = {"gen": {"class_type": "MakesCycle", "inputs": {}},
              "show": {"class_type": "Show", "inputs": {"value": ["gen", 0]}}}
    outcome = PromptExecutor(reg).execute(prompt, "p", {}, ["show"])
    assert outcome.status == "error" and outcome.error is not None
    assert outcome.error["node_id"] == "gen" and outcome.error["node_type"] == "MakesCycle"
    assert outcome.error["exception_type"] == "graph.DependencyCycleError"


def test_input_is_list_takes_any_true_value(nodes: Reg) -> None:
    reg, _ = nodes

    class Count:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        INPUT_IS_LIST = (True,)  # as some packs write it; ComfyUI reads its truth value

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"values": ("INT",)}}

        def run(self, values: list[int]) -> tuple[int]:
            return (len(values),)

    reg.register("Count", Count)
    prompt = {"l": {"class_type": "Range", "inputs": {"n": 3}},
              "n": {"class_type": "Count", "inputs": {"values": ["l", 0]}},
              "show": {"class_type": "Show", "inputs": {"value": ["n", 0]}}}
    assert run_graph(reg, prompt).value("n") == 3


def test_an_async_check_lazy_status_is_awaited_and_its_answer_used(nodes: Reg) -> None:
    reg, log = nodes

    class AsyncPick:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"first": ("BOOLEAN",), "a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True})}}

        async def check_lazy_status(self, first: bool, a: int | None = None, b: int | None = None) -> list[str]:
            await asyncio.sleep(0)
            wanted = "a" if first else "b"
            return [wanted] if (a if first else b) is None else []

        def run(self, first: bool, a: int | None = None, b: int | None = None) -> tuple[int | None]:
            return (a if first else b,)

    reg.register("AsyncPick", AsyncPick)
    prompt = {"ca": {"class_type": "Const", "inputs": {"value": 1}},
              "cb": {"class_type": "Const", "inputs": {"value": 2}},
              "pick": {"class_type": "AsyncPick", "inputs": {"first": False, "a": ["ca", 0], "b": ["cb", 0]}},
              "show": {"class_type": "Show", "inputs": {"value": ["pick", 0]}}}
    executor = PromptExecutor(reg, cache=CachePolicy.none())
    assert run_graph(reg, prompt, executor=executor).value("pick") == 2
    assert log.count("cb") == 1 and log.count("ca") == 0
