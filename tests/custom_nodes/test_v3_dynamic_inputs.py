"""A V3 pack's io.Autogrow / io.DynamicCombo / io.MatchType inputs: /object_info specs and runs."""
from __future__ import annotations

from typing import Any

import pytest

from executor import PromptValidationError
from executor.testing import run_graph


def run(registry: Any, prompt: dict[str, Any], prompt_id: str = "p1") -> Any:
    """Run `prompt` with a V3Show output "99" fed by its last node; returns the outcome."""
    prompt = {**prompt, "99": {"class_type": "V3Show", "inputs": {"value": [list(prompt)[-1], 0]}}}
    return run_graph(registry, prompt).outcome


def test_specs_are_comfyui_s(packs: Any) -> None:
    report = packs.load("v3_pack", "v3_dynamic_pack")["v3_dynamic_pack"]
    assert report.status == "loaded", report.error or report.refused
    info = packs.registry.object_info()
    xs = info["V3GrowSum"]["input"]["required"]["xs"]
    assert xs[0] == "COMFY_AUTOGROW_V3"
    assert xs[1]["template"] == {"input": {"required": {"x": ["FLOAT", {"min": -100.0, "max": 100.0,
                                                                        "forceInput": True}]}},
                                 "prefix": "x", "min": 1, "max": 4}
    mode = info["V3GrowSum"]["input"]["required"]["mode"]
    assert mode[0] == "COMFY_DYNAMICCOMBO_V3"
    assert mode[1]["options"] == [{"key": "sum", "inputs": {}},
                                  {"key": "scaled sum", "inputs": {"required": {"factor": ["FLOAT", {"default": 2.0}]}}}]
    pick = info["V3Pick"]
    assert pick["output"] == ["COMFY_MATCHTYPE_V3"] and pick["output_name"] == ["picked"]
    value = pick["input"]["required"]["values"][1]["template"]["input"]["required"]["value"]
    assert value == ["COMFY_MATCHTYPE_V3", {"template": {"template_id": "t", "allowed_types": "FLOAT,INT"}}]


def test_members_arrive_as_dicts(packs: Any) -> None:
    packs.load("v3_pack", "v3_dynamic_pack")
    outcome = run(packs.registry, {
        "1": {"class_type": "V3ScaleNumber", "inputs": {"value": 1.5, "mode": "double"}},
        "2": {"class_type": "V3GrowSum", "inputs": {"xs.x0": ["1", 0], "xs.x2": 4.0, "mode": "scaled sum",
                                                    "mode.factor": 0.5}},
        "3": {"class_type": "V3Pick", "inputs": {"values.first": ["2", 0], "values.second": 9.0, "index": 0}},
    })
    assert outcome.status == "success", outcome.error
    assert outcome.outputs["99"]["shown"] == [repr((3.0 + 4.0) * 0.5)]
    outcome = run(packs.registry, {"1": {"class_type": "V3GrowSum", "inputs": {"xs.x0": 2.0, "mode": "sum"}}},
                     "p2")
    assert outcome.outputs["99"]["shown"] == ["2.0"]


def test_validate_inputs_gets_the_dicts_and_errors_name_members(packs: Any) -> None:
    packs.load("v3_pack", "v3_dynamic_pack")
    with pytest.raises(PromptValidationError, match="factor must not be 0"):
        run(packs.registry, {"1": {"class_type": "V3GrowSum", "inputs": {"xs.x0": 1.0, "mode": "scaled sum",
                                                                         "mode.factor": 0.0}}})
    with pytest.raises(PromptValidationError) as info:
        run(packs.registry, {"1": {"class_type": "V3GrowSum", "inputs": {"xs.x1": 1.0, "mode": "sum"}}})
    errors = info.value.node_errors["1"]["errors"]
    assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [("required_input_missing", "xs.x0")]
