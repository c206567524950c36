"""validate_prompt: every error type, all-errors-at-once, cycles, partial targets, extra checks."""
from __future__ import annotations

from typing import Any

import pytest
from executor_fixture_nodes import CallLog

from executor import NodeError, NodeRegistry, PromptValidationError, validate_prompt
from executor.checks import types_compatible

Reg = tuple[NodeRegistry, CallLog]


def _fail(registry: NodeRegistry, prompt: Any, **kw: Any) -> dict[str, Any]:
    with pytest.raises(PromptValidationError) as info:
        validate_prompt(registry, prompt, **kw)
    wire = info.value.to_wire()
    assert set(wire) == {"error", "node_errors"}
    assert set(wire["error"]) == {"type", "message", "details", "extra_info"}
    return wire


def _types(wire: dict[str, Any], node_id: str) -> list[str]:
    return [e["type"] for e in wire["node_errors"][node_id]["errors"]]


def test_prompt_not_an_object_and_missing_class_type(nodes: Reg) -> None:
    reg, _ = nodes
    assert _fail(reg, [1, 2])["error"]["type"] == "invalid_prompt"
    wire = _fail(reg, {"1": {"inputs": {}}, "2": {"class_type": "Show", "inputs": {}}})
    assert wire["error"] == {"type": "invalid_prompt",
                             "message": "Cannot execute because a node is missing the class_type property.",
                             "details": "Node ID '#1'", "extra_info": {}}


def test_missing_node_types_are_all_reported(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"class_type": "Nope", "inputs": {}}, "2": {"class_type": "Gone", "inputs": {}},
                       "3": {"class_type": "Show", "inputs": {"value": 1}}})
    assert wire["error"]["type"] == "missing_node_type"
    assert wire["error"]["message"] == "Node 'Nope' not found. The custom node may not be installed."
    assert set(wire["node_errors"]) == {"1", "2"}
    assert wire["node_errors"]["2"]["class_type"] == "Gone"
    assert wire["error"]["extra_info"] == {"node_id": "1", "class_type": "Nope", "node_title": "Nope"}


def test_structural_and_missing_class_problems_are_reported_together(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"inputs": {}}, "2": {"class_type": "Gone", "inputs": {}}, "3": "junk"})
    assert wire["error"]["type"] == "invalid_prompt" and wire["error"]["extra_info"] == {}
    assert {n: _types(wire, n) for n in wire["node_errors"]} == {
        "1": ["invalid_prompt"], "3": ["invalid_prompt"], "2": ["missing_node_type"]}


def test_prompt_without_outputs(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"class_type": "Const", "inputs": {"value": 1}}})
    assert wire == {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                              "extra_info": {}}, "node_errors": {}}


@pytest.mark.parametrize(("inputs", "expected", "details"), [
    ({}, "required_input_missing", "value"),
    ({"value": ["9", 0]}, "bad_linked_input", None),
    ({"value": ["1", 0, 1]}, "bad_linked_input", "value"),
    ({"value": ["1", 5]}, "bad_linked_input", None),
    ({"value": 101}, "value_bigger_than_max", "value"),
    ({"value": -101}, "value_smaller_than_min", "value"),
    ({"value": "3.5"}, "invalid_input_type", None),
    ({"value": ["2", 0]}, "return_type_mismatch", "value, received_type(STRING) mismatch input_type(INT)"),
])
def test_each_input_error_type(nodes: Reg, inputs: dict[str, Any], expected: str, details: str | None) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Text", "inputs": {"text": "hi"}},
              "3": {"class_type": "Const", "inputs": inputs},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    wire = _fail(reg, prompt)
    assert wire["error"]["type"] == "prompt_outputs_failed_validation"
    assert wire["error"]["message"] == "Prompt outputs failed validation"
    assert _types(wire, "3") == [expected]
    entry = wire["node_errors"]["3"]
    assert entry["class_type"] == "Const" and entry["dependent_outputs"] == ["4"]
    assert "4" not in wire["node_errors"]  # the output is invalid only through its upstream node
    error = entry["errors"][0]
    assert error["extra_info"]["input_name"] == "value"
    if details is not None:
        assert error["details"] == details
    assert f"{error['message']}: {error['details']}" in wire["error"]["details"]


def test_min_max_messages_and_coercion(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"class_type": "Const", "inputs": {"value": 200}},
                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    error = wire["node_errors"]["1"]["errors"][0]
    assert error["message"] == "Value 200 bigger than max of 100"
    assert error["extra_info"] == {"input_name": "value", "received_value": 200,
                                   "input_config": ["INT", {"default": 0, "min": -100, "max": 100}]}
    valid = validate_prompt(reg, {"1": {"class_type": "Const", "inputs": {"value": 3.7}},
                                  "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    assert valid.prompt["1"]["inputs"]["value"] == 3


def test_combo_errors_and_long_lists(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"class_type": "Text", "inputs": {"text": "x", "mode": "lower"}},
                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    error = wire["node_errors"]["1"]["errors"][0]
    assert error["type"] == "value_not_in_list" and error["message"] == "Value not in list"
    assert error["details"] == "mode: 'lower' not in ['plain', 'upper']"

    class Many:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"c": ([f"o{i}" for i in range(30)],)}}

        def run(self, c: str) -> tuple[str]:
            return (c,)

    reg.register("Many", Many)
    wire = _fail(reg, {"1": {"class_type": "Many", "inputs": {"c": "zz"}},
                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    error = wire["node_errors"]["1"]["errors"][0]
    assert error["details"] == "c: 'zz' not in (list of length 30)" and error["extra_info"]["input_config"] is None


def test_custom_validation_skips_builtin_checks_for_named_inputs(nodes: Reg) -> None:
    reg, _ = nodes
    ok = validate_prompt(reg, {"1": {"class_type": "Picky", "inputs": {"name": "c.png", "count": 2}},
                               "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    assert ok.outputs == ["2"]  # "c.png" is not in the COMBO, but VALIDATE_INPUTS takes `name`
    wire = _fail(reg, {"1": {"class_type": "Picky", "inputs": {"name": "c.jpg", "count": 9}},
                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}})
    errors = wire["node_errors"]["1"]["errors"]
    assert [e["type"] for e in errors] == ["value_bigger_than_max", "custom_validation_failed"]
    assert errors[1]["message"] == "Custom validation failed for node"
    assert errors[1]["details"] == "name - c.jpg is not a png"


def test_validate_inputs_with_input_types_skips_link_type_checks(nodes: Reg) -> None:
    reg, _ = nodes
    seen: dict[str, Any] = {}

    class AnyIn:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"x": ("INT",)}}

        @classmethod
        def VALIDATE_INPUTS(cls, input_types: dict[str, Any], x: Any = None) -> bool:
            seen.update(input_types=input_types, x=x)
            return True

        def run(self, x: Any) -> tuple[Any]:
            return (x,)

    reg.register("AnyIn", AnyIn)
    validate_prompt(reg, {"1": {"class_type": "Text", "inputs": {"text": "s"}},
                          "2": {"class_type": "AnyIn", "inputs": {"x": ["1", 0]}},
                          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}})
    assert seen == {"input_types": {"x": "STRING"}, "x": None}


def test_exceptions_during_validation(nodes: Reg) -> None:
    reg, _ = nodes

    class Raises:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        OUTPUT_NODE = False

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"x": ("INT", {"default": 0})}}

        @classmethod
        def VALIDATE_INPUTS(cls, x: int) -> bool:
            raise RuntimeError("validator broke")

        def run(self, x: int) -> tuple[int]:
            return (x,)

    class RaisesOut(Raises):
        OUTPUT_NODE = True

    reg.register("Raises", Raises)
    reg.register("RaisesOut", RaisesOut)
    wire = _fail(reg, {"1": {"class_type": "Raises", "inputs": {"x": 1}},
                       "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
                       "3": {"class_type": "RaisesOut", "inputs": {"x": 1}}})
    assert _types(wire, "1") == ["exception_during_inner_validation"]
    assert _types(wire, "3") == ["exception_during_validation"]
    assert wire["node_errors"]["3"]["errors"][0]["details"] == "validator broke"


def test_all_errors_are_collected_at_once(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {
        "1": {"class_type": "Const", "inputs": {"value": 500}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Text", "inputs": {"text": "x", "mode": "nope"}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
    })
    assert _types(wire, "1") == ["value_bigger_than_max"]
    assert _types(wire, "2") == ["required_input_missing"]
    assert _types(wire, "4") == ["value_not_in_list"]
    assert wire["node_errors"]["1"]["dependent_outputs"] == ["3"]
    assert wire["node_errors"]["4"]["dependent_outputs"] == ["5"]
    assert len(wire["error"]["details"].splitlines()) == 3


def test_cycles_name_their_nodes(nodes: Reg) -> None:
    reg, _ = nodes
    wire = _fail(reg, {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
                       "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
                       "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}})
    assert _types(wire, "1") == ["dependency_cycle"] and _types(wire, "2") == ["dependency_cycle"]
    assert "#1" in wire["node_errors"]["1"]["errors"][0]["details"]
    assert "#2" in wire["node_errors"]["1"]["errors"][0]["details"]


def test_only_nodes_feeding_outputs_are_validated_and_partial_success(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "garbage"}},  # unreachable: ignored
              "2": {"class_type": "Const", "inputs": {"value": 1}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
              "4": {"class_type": "Fail", "inputs": {}},
              "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}}}
    valid = validate_prompt(reg, prompt)
    assert valid.outputs == ["3"]
    assert list(valid.node_errors) == ["4"] and valid.node_errors["4"]["dependent_outputs"] == ["5"]


def test_partial_execution_targets(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Fail", "inputs": {}},
              "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    valid = validate_prompt(reg, prompt, partial_execution_targets=["2", "1"])
    assert valid.outputs == ["2"] and valid.node_errors == {}
    assert any("'#1'" in w for w in valid.warnings)
    assert _fail(reg, prompt, partial_execution_targets=["9"])["error"]["type"] == "prompt_no_outputs"


def test_literal_arrays_are_unwrapped(nodes: Reg) -> None:
    reg, _ = nodes
    valid = validate_prompt(reg, {"1": {"class_type": "Show", "inputs": {"value": {"__value__": [1, 2]}}}})
    assert valid.prompt["1"]["inputs"]["value"] == {"__value__": [1, 2]}  # kept wrapped: never a link


def test_extra_checks_add_node_errors(nodes: Reg) -> None:
    reg, _ = nodes
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}

    def no_consts(p: dict[str, Any], r: NodeRegistry) -> list[NodeError]:
        return [NodeError(n, "model_mismatch", "Model does not fit", "use another")
                for n, node in p.items() if node["class_type"] == "Const"]

    wire = _fail(reg, prompt, extra_checks=[no_consts])
    assert wire["node_errors"]["1"]["errors"] == [{"type": "model_mismatch", "message": "Model does not fit",
                                                   "details": "use another", "extra_info": {}}]
    assert validate_prompt(reg, prompt, extra_checks=[lambda p, r: []]).outputs == ["2"]


@pytest.mark.parametrize(("received", "expected", "ok"), [
    ("INT", "INT", True), ("INT", "FLOAT", False), ("*", "MODEL", True), ("IMAGE", "*", True),
    ("FLOAT,INT", "INT", True), ("STRING", "FLOAT,INT", False), (["a", "b"], "COMBO", True),
    ("STRING", ["a", "b"], False), ("COMFY_MATCHTYPE_V3", "LATENT", True),
])
def test_link_type_compatibility(received: Any, expected: Any, ok: bool) -> None:
    assert types_compatible(received, expected) is ok
