"""The five ControlNet / T2I-Adapter golden cases through the real nodes, plus the residuals of the first
control call, the diffusers / v1.1 pair (bit-identical) and the deprecated apply node."""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from adapter_helpers import GOLDEN, golden_png, saved_png

CASES = ["cn_v11__adv_s1.0__euler__normal",
         "cn_v11__adv_s0.6_p0.2-0.7__dpmpp_2m__karras",
         "cn_chain__v11_edges_s0.7__v10_depth_s0.5_p0.0-0.5__euler_ancestral__normal",
         "t2i_depth__adv_s1.0__euler__normal",
         "sdxl_cn__adv_s0.9_hint_crop__euler__normal"]


def _case(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"comfy__{name}.json").read_text())


@pytest.fixture()
def first_residuals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, Any]]:
    """Records (sigma, residuals) of each outermost control call; the run itself is unchanged."""
    from engine.adapters.control import ControlRun

    calls: list[tuple[float, Any]] = []
    original = ControlRun.run
    outermost: set[int] = set()

    def recording(self: ControlRun, x: Any, sigma: Any, *args: Any) -> Any:
        if self.previous is not None:
            outermost.add(id(self.previous))
        out = original(self, x, sigma, *args)
        if id(self) not in outermost and out is not None:
            calls.append((float(sigma[0]), out))
        return out

    monkeypatch.setattr(ControlRun, "run", recording)
    return calls


@pytest.mark.parametrize("name", CASES)
def test_golden_case(name: str, run: Any, runtime: Any, rel: Any, first_residuals: list[Any]) -> None:
    case = _case(name)
    outcome = run(case["graph"], name)
    assert outcome.status == "success", outcome.error
    latent = outcome.values[case["latent_node"]][0][0]["samples"].numpy()
    assert rel(latent, np.load(GOLDEN / f"comfy__{name}.latent.npy")) < 1e-4
    ours, theirs = saved_png(runtime, outcome, case["save_node"]), golden_png(name)
    assert ours.shape == theirs.shape
    assert int(np.abs(ours - theirs).max()) <= 2 and float(np.abs(ours - theirs).mean()) <= 0.01

    # the first control call: same sigma, and the merged residuals ComfyUI's UNet added
    sigma, residuals = first_residuals[0]
    assert sigma == pytest.approx(case["control"]["sigma"], rel=1e-6)
    golden = np.load(GOLDEN / f"comfy__{name}.control.npz")
    names = {"output": "output_{:02d}", "middle": "middle_{:02d}", "input": "input_{:02d}"}
    compared = 0
    for kind, fmt in names.items():
        for i, r in enumerate(residuals.get(kind, [])):
            if r is None:
                assert fmt.format(i) not in golden
                continue
            g = golden[fmt.format(i)]
            assert rel(np.broadcast_to(r.numpy(), g.shape), g) < 1e-4, (kind, i)
            compared += 1
    assert compared == len(golden.files)


def test_diffusers_and_v11_files_give_bit_identical_images(run: Any, runtime: Any) -> None:
    name = CASES[0]
    graph = _case(name)["graph"]
    diffusers = copy.deepcopy(graph)
    diffusers["20"]["inputs"]["control_net_name"] = "tiny-control_v11p_sd15_canny.diffusers.fp16.safetensors"
    a, b = run(graph, "v11"), run(diffusers, "diffusers")
    assert a.status == b.status == "success", (a.error, b.error)
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())
    assert np.array_equal(saved_png(runtime, a, "7"), saved_png(runtime, b, "7"))


def test_deprecated_apply_controls_both_sides(run: Any, first_residuals: list[Any]) -> None:
    """ControlNetApply on the positive only: the sampler gives the negative the same control, so the first
    call is one batch of both rows and equals ControlNetApplyAdvanced's at strength 1."""
    graph = _case(CASES[0])["graph"]
    old = copy.deepcopy(graph)
    old["21"] = {"class_type": "ControlNetApply", "inputs": {"conditioning": ["2", 0], "control_net": ["20", 0],
                                                            "image": ["10", 0], "strength": 1.0}}
    old["5"]["inputs"]["positive"] = ["21", 0]
    old["5"]["inputs"]["negative"] = ["3", 0]
    new = run(graph, "adv")
    calls_adv = len(first_residuals)
    deprecated = run(old, "old")
    assert new.status == deprecated.status == "success"
    assert len(first_residuals) == 2 * calls_adv
    first_adv, first_old = first_residuals[0][1], first_residuals[calls_adv][1]
    assert first_old["output"][0].shape[0] == 2
    for a, b in zip(first_adv["output"], first_old["output"], strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    assert np.array_equal(new.values["5"][0][0]["samples"].numpy(), deprecated.values["5"][0][0]["samples"].numpy())


def test_strength_zero_is_the_plain_graph(run: Any) -> None:
    graph = _case(CASES[0])["graph"]
    zero = copy.deepcopy(graph)
    zero["21"]["inputs"]["strength"] = 0.0
    plain = copy.deepcopy(graph)
    for node in ("10", "20", "21"):
        del plain[node]
    plain["5"]["inputs"]["positive"], plain["5"]["inputs"]["negative"] = ["2", 0], ["3", 0]
    a, b, c = run(zero, "zero"), run(plain, "plain"), run(graph, "full")
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())
    assert not np.array_equal(a.values["5"][0][0]["samples"].numpy(), c.values["5"][0][0]["samples"].numpy())
