"""Autogrow / DynamicCombo inputs (ComfyUI's COMFY_AUTOGROW_V3 / COMFY_DYNAMICCOMBO_V3) through the executor."""
from __future__ import annotations

from typing import Any

import pytest

from executor.dynamic_inputs import dynamic_paths, expand, fold
from executor.errors import PromptValidationError
from executor.testing import run_graph

GROW = ("COMFY_AUTOGROW_V3", {"template": {"input": {"required": {"v": ("INT", {"min": 0, "max": 100})}},
                                           "prefix": "v", "min": 2, "max": 5}})
COMBO = ("COMFY_DYNAMICCOMBO_V3", {"options": [
    {"key": "add", "inputs": {"required": {"amount": ("INT", {"default": 1, "min": 0, "max": 10})}}},
    {"key": "scale", "inputs": {"required": {"factor": ("FLOAT", {"default": 2.0}),
                                             "inner": ("COMFY_DYNAMICCOMBO_V3", {"options": [
                                                 {"key": "round", "inputs": {}},
                                                 {"key": "offset", "inputs": {"required": {"by": ("INT",)}}}]})}}},
]})


class Number:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0, "min": -1000, "max": 1000})}}

    def run(self, value: int) -> tuple[int]:
        return (value,)


class Sum:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    seen: list[dict[str, Any]] = []

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"values": GROW, "op": COMBO}}

    def run(self, values: dict[str, int], op: dict[str, Any]) -> dict[str, Any]:
        Sum.seen.append({"values": values, "op": op})
        total = sum(values.values())
        if op["op"] == "add":
            total += op["amount"]
        else:
            total = total * op["factor"]
            total = round(total) if op["inner"]["inner"] == "round" else total + op["inner"]["by"]
        return {"ui": {"total": [total]}, "result": (total,)}


NODES = {"Number": Number, "Sum": Sum}


def _graph(**sum_inputs: Any) -> dict[str, Any]:
    return {"1": {"class_type": "Number", "inputs": {"value": 3}},
            "2": {"class_type": "Number", "inputs": {"value": 4}},
            "3": {"class_type": "Sum", "inputs": sum_inputs}}


def test_members_and_options_reach_the_node_as_dicts() -> None:
    Sum.seen.clear()
    run = run_graph(NODES, _graph(**{"values.v0": ["1", 0], "values.v1": ["2", 0], "values.v3": 5,
                                     "op": "add", "op.amount": 2}))
    assert run.ui["3"]["total"] == [3 + 4 + 5 + 2]
    assert Sum.seen[-1] == {"values": {"v0": 3, "v1": 4, "v3": 5}, "op": {"op": "add", "amount": 2}}
    run = run_graph(NODES, _graph(**{"values.v0": ["1", 0], "values.v1": 1, "op": "scale", "op.factor": 1.5,
                                     "op.inner": "offset", "op.inner.by": 10}))
    assert run.ui["3"]["total"] == [(3 + 1) * 1.5 + 10]
    assert Sum.seen[-1]["op"] == {"op": "scale", "factor": 1.5, "inner": {"inner": "offset", "by": 10}}


@pytest.mark.parametrize(("inputs", "error", "name"), [
    ({"values.v0": 1, "op": "add", "op.amount": 1}, "required_input_missing", "values.v1"),  # min 2
    ({"values.v0": 1, "values.v1": 200, "op": "add", "op.amount": 1}, "value_bigger_than_max", "values.v1"),
    ({"values.v0": 1, "values.v1": 2, "op": "multiply"}, "value_not_in_list", "op"),
    ({"values.v0": 1, "values.v1": 2, "op": "add"}, "required_input_missing", "op.amount"),
    ({"values.v0": 1, "values.v1": 2, "op": "add", "op.amount": 11}, "value_bigger_than_max", "op.amount"),
    ({"values.v0": 1, "values.v1": 2, "op": "scale", "op.factor": 1.0, "op.inner": "offset"},
     "required_input_missing", "op.inner.by"),
])
def test_validation_names_the_dotted_input(inputs: dict[str, Any], error: str, name: str) -> None:
    with pytest.raises(PromptValidationError) as info:
        run_graph(NODES, _graph(**inputs))
    errors = info.value.node_errors["3"]["errors"]
    assert any(e["type"] == error and e["extra_info"]["input_name"] == name for e in errors), errors


def test_a_link_of_the_wrong_type_into_a_member_is_refused() -> None:
    class Text:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> tuple[str]:
            return ("x",)

    graph = _graph(**{"values.v0": ["1", 0], "values.v1": ["5", 0], "op": "add", "op.amount": 1})
    graph["5"] = {"class_type": "Text", "inputs": {}}
    with pytest.raises(PromptValidationError) as info:
        run_graph({**NODES, "Text": Text}, graph)
    errors = info.value.node_errors["3"]["errors"]
    assert errors[0]["type"] == "return_type_mismatch" and errors[0]["extra_info"]["input_name"] == "values.v1"
    graph["3"]["inputs"]["values.v1"] = ["2", 0]  # INT into INT is fine
    assert run_graph({**NODES, "Text": Text}, graph).ui["3"]["total"] == [3 + 4 + 1]


def test_expand_and_fold_are_inverse_on_names() -> None:
    flat = expand({"required": {"values": GROW, "op": COMBO}}, {"op": "scale", "op.inner": "round"})
    assert list(flat["required"]) == ["values.v0", "values.v1", "op", "op.factor", "op.inner"]
    assert list(flat["optional"]) == ["values.v2", "values.v3", "values.v4"]
    assert flat["required"]["op"][0] == ["add", "scale"]
    live = {"values.v2": 1, "op": "scale", "op.factor": 2.0, "op.inner": "round", "other": 0}
    paths = dynamic_paths({"required": {"values": GROW, "op": COMBO}}, live)
    assert paths == {"values": "COMFY_AUTOGROW_V3", "op": "COMFY_DYNAMICCOMBO_V3",
                     "op.inner": "COMFY_DYNAMICCOMBO_V3"}
    folded = fold(live, paths)
    assert folded == {"other": 0, "values": {"v2": 1}, "op": {"op": "scale", "factor": 2.0,
                                                              "inner": {"inner": "round"}}}
    assert folded["op"]["inner"] == {"inner": "round"} and list(folded["values"]) == ["v2"]
    assert fold({}, {"values": "COMFY_AUTOGROW_V3"}) == {"values": {}}


def test_names_template_and_undeclared_dotted_inputs_are_ignored() -> None:
    class Names:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"xs": ("COMFY_AUTOGROW_V3", {"template": {
                "input": {"required": {"x": ("INT", {})}}, "names": ["a", "b", "c"], "min": 1}})}}

        def run(self, xs: dict[str, int]) -> dict[str, Any]:
            return {"ui": {"got": [sorted(xs.items())]}, "result": (0,)}

    run = run_graph({"Names": Names}, {"1": {"class_type": "Names", "inputs": {"xs.a": 1, "xs.c": 3,
                                                                               "unknown.z": 9}}})
    assert run.ui["1"]["got"] == [[("a", 1), ("c", 3)]]
    with pytest.raises(PromptValidationError):
        run_graph({"Names": Names}, {"1": {"class_type": "Names", "inputs": {"xs.b": 1}}})  # "a" is required
