"""Validation before the run: a ControlNet / T2I-Adapter of another family than the sampled model is a node
error naming both files; matching families pass."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from adapter_helpers import GOLDEN

from executor import PromptValidationError, validate_prompt
from nodes.checks import builtin_checks


def _graph(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((GOLDEN / f"comfy__{name}.json").read_text())["graph"])


def _validate(runtime: Any, graph: dict[str, Any]) -> Any:
    return validate_prompt(runtime.registry, graph, extra_checks=builtin_checks(runtime.services))


def test_sdxl_controlnet_on_sd15_model_names_both_files(runtime: Any) -> None:
    graph = _graph("cn_v11__adv_s1.0__euler__normal")
    graph["20"]["inputs"]["control_net_name"] = "tiny-controlnet-canny-sdxl-1.0.diffusers.fp16.safetensors"
    with pytest.raises(PromptValidationError) as info:
        _validate(runtime, graph)
    wire = info.value.to_wire()
    (error,) = wire["node_errors"]["21"]["errors"]
    assert error["type"] == "control_family_mismatch"
    assert "tiny-controlnet-canny-sdxl-1.0.diffusers.fp16.safetensors" in error["details"]
    assert "tiny-sd15.safetensors" in error["details"] and "sdxl" in error["details"] and "sd15" in error["details"]
    assert error["extra_info"]["model_family"] == "sd15" and error["extra_info"]["control_family"] == "sdxl"


def test_sd15_controlnet_on_sdxl_model_in_a_chain(runtime: Any) -> None:
    graph = _graph("sdxl_cn__adv_s0.9_hint_crop__euler__normal")
    loader = next(k for k, v in graph.items() if v["class_type"] == "ControlNetLoader")
    apply = next(k for k, v in graph.items() if v["class_type"] == "ControlNetApplyAdvanced")
    graph[loader]["inputs"]["control_net_name"] = "tiny-t2iadapter_depth_sd15v2.safetensors"
    with pytest.raises(PromptValidationError) as info:
        _validate(runtime, graph)
    errors = info.value.to_wire()["node_errors"][apply]["errors"]
    assert errors[0]["type"] == "control_family_mismatch" and "tiny-sdxl.safetensors" in errors[0]["details"]


@pytest.mark.parametrize("name", ["cn_chain__v11_edges_s0.7__v10_depth_s0.5_p0.0-0.5__euler_ancestral__normal",
                                  "t2i_depth__adv_s1.0__euler__normal", "sdxl_cn__adv_s0.9_hint_crop__euler__normal"])
def test_matching_families_validate(runtime: Any, name: str) -> None:
    assert _validate(runtime, _graph(name)).outputs
