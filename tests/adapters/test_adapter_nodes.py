"""Node behaviour around the apply nodes: the history record, SetUnionControlNetType, clear loader errors,
1-channel T2I hints."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from adapter_helpers import ADA, GOLDEN

CASE = "cn_chain__v11_edges_s0.7__v10_depth_s0.5_p0.0-0.5__euler_ancestral__normal"


def _graph(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((GOLDEN / f"comfy__{name}.json").read_text())["graph"])


def test_apply_nodes_record_the_chain_for_history(run: Any) -> None:
    outcome = run(_graph(CASE), "history")
    assert outcome.status == "success", outcome.error
    assert "23" not in outcome.outputs  # not a UI output: ComfyUI clients see none for an apply node
    record = outcome.reports["23"]["controls"][0]["chain"]
    assert [r["file"] for r in record] == ["tiny-control_sd15_canny_v10.safetensors",
                                           "tiny-control_v11p_sd15_canny_fp16.safetensors"]
    assert record[0]["strength"] == 0.5 and record[0]["end_percent"] == 0.5 and record[1]["strength"] == 0.7
    assert record[0]["kind"] == "controlnet" and record[0]["family"] == "sd15"
    json.dumps(outcome.reports)  # wire-safe
    steps = {r["file"]: r["steps"] for r in outcome.reports["5"]["adapters"]}
    assert steps["tiny-control_v11p_sd15_canny_fp16.safetensors"] == list(range(20))
    assert steps["tiny-control_sd15_canny_v10.safetensors"] == list(range(10))  # 0.0-0.5 of 20 normal steps


def test_set_union_type_on_a_plain_controlnet_changes_nothing(run: Any) -> None:
    graph = _graph("cn_v11__adv_s1.0__euler__normal")
    union = copy.deepcopy(graph)
    union["25"] = {"class_type": "SetUnionControlNetType",
                   "inputs": {"control_net": ["20", 0], "type": "canny/lineart/anime_lineart/mlsd"}}
    union["21"]["inputs"]["control_net"] = ["25", 0]
    a, b = run(graph, "plain"), run(union, "union")
    assert a.status == b.status == "success"
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())


def test_loader_errors_name_the_file(run: Any, adapters_base: Path) -> None:
    target = adapters_base / "models" / "controlnet" / "not-a-controlnet.safetensors"
    if not target.exists():
        os.symlink(ADA / "tiny-coadapter-style-sd15v1.safetensors", target)
    graph = _graph("cn_v11__adv_s1.0__euler__normal")
    graph["20"]["inputs"]["control_net_name"] = "not-a-controlnet.safetensors"
    outcome = run(graph, "bad")
    assert outcome.status == "error"
    message = outcome.error["exception_message"]
    assert "ControlNetLoader" in message and "not-a-controlnet.safetensors" in message
    assert "not a ControlNet or T2I-Adapter" in message


def test_one_channel_t2i_adapter_averages_the_hint(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from engine.adapters.control import ControlRun
    from engine.adapters.control_load import load_control
    from engine.device import DevicePolicy
    from engine.model_management import ModelManager
    from engine.sampling.model_sampling import ModelSamplingDiscrete

    sd = load_file(str(ADA / "tiny-t2iadapter_depth_sd15v2.safetensors"))
    sd["conv_in.weight"] = sd["conv_in.weight"][:, :64].contiguous()  # cin 64: a 1-channel (depth / sketch) adapter
    path = tmp_path / "t2iadapter_sketch_sd15v2.safetensors"
    save_file(sd, str(path))
    handle = load_control(path, ModelManager(DevicePolicy.cpu()))
    assert handle.config.hint_channels == 1
    hint = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    model = type("M", (), {"model_sampling": ModelSamplingDiscrete()})()
    x = torch.zeros(2, 4, 8, 16)
    runs = [ControlRun(handle.copy().set_cond_hint(h), model, None) for h in (hint, hint.mean(1, keepdim=True))]
    a, b = (r.run(x, torch.tensor([1.0, 1.0]), torch.zeros(2, 77, 32), None, 2) for r in runs)
    assert a is not None and b is not None
    for fa, fb in zip(a["input"], b["input"], strict=True):
        assert (fa is None) == (fb is None)
        if fa is not None:
            assert torch.equal(fa, fb)
