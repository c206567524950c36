"""Schedulers against the golden ComfyUI sigmas and the spec's reference values; KSampler windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.sampling.ksampler import ksampler_sigmas, step_window
from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.samplers import get_sampler
from engine.sampling.schedulers import SCHEDULER_NAMES, calculate_sigmas

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
MS = ModelSamplingDiscrete()


def _golden_cases() -> list[tuple[str, dict, np.ndarray]]:
    out = []
    for case in ("txt2img__euler__normal", "txt2img__dpmpp_2m__karras", "img2img__euler__normal",
                 "inpaint__euler__normal"):
        d = json.loads((FIX / "golden" / f"{case}.json").read_text())
        out.append((case, {"steps": d["steps"], "sampler": d["sampler_name"], "scheduler": d["scheduler"],
                           "denoise": d["denoise"]}, np.load(FIX / "golden" / f"{case}.sigmas.npy")))
    for path in sorted((FIX / "golden_graphs").glob("*.json")):
        d = json.loads(path.read_text())
        for call in d["sampler_calls"]:
            node = d["graph"][call["node"]]["inputs"]
            out.append((f"{path.stem}:{call['node']}", {
                "steps": node["steps"], "sampler": node["sampler_name"], "scheduler": node["scheduler"],
                "denoise": node.get("denoise", 1.0), "start": node.get("start_at_step"),
                "end": node.get("end_at_step"),
                "full": node.get("return_with_leftover_noise", "disable") != "enable"},
                np.array(call["sigmas"], dtype=np.float32)))
    return out


@pytest.mark.parametrize(("case", "p", "golden"), _golden_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_ksampler_sigmas_equal_golden(case: str, p: dict, golden: np.ndarray) -> None:
    sig = ksampler_sigmas(MS, p["scheduler"], p["steps"], p["denoise"], get_sampler(p["sampler"]))
    if p.get("start") is not None or p.get("end") is not None:
        window = step_window(sig, p.get("start"), p.get("end"), p["full"])
        assert window is not None
        sig = window
    got = sig.numpy()
    assert got.dtype == np.float32 and got.shape == golden.shape
    # bit-exact, except that at most one value may sit one float32 ulp away: normal's sigma(52.58) lies
    # almost exactly between two floats, and exp() implementations round it differently
    exact = got == golden
    assert exact.sum() >= len(golden) - 1, (got, golden)
    assert np.all(np.abs(got - golden) <= np.spacing(golden)), (got, golden)


REFERENCE_20 = {
    "normal": [14.614640, 10.746800, 8.081519, 6.204935, 4.855652, 3.865378, 3.123761, 2.557166, 2.115658,
               1.764822, 1.480581, 1.245813, 1.048142, 0.878428, 0.729719, 0.596434, 0.473585, 0.355545,
               0.232164, 0.029167, 0.0],
    "karras": [14.614643, 11.725368, 9.340202, 7.383618, 5.789413, 4.499835, 3.464747, 2.640841, 1.990916,
               1.483211, 1.090786, 0.790946, 0.564722, 0.396390, 0.273038, 0.184168, 0.121341, 0.077860,
               0.048481, 0.029167, 0.0],
}


@pytest.mark.parametrize("name", sorted(REFERENCE_20))
def test_spec_reference_values(name: str) -> None:
    np.testing.assert_allclose(calculate_sigmas(MS, name, 20).numpy(), REFERENCE_20[name], atol=1.5e-6)


def test_denoise_keeps_the_tail_of_a_longer_schedule() -> None:
    sig = ksampler_sigmas(MS, "normal", 20, 0.5, get_sampler("euler"))
    assert len(sig) == 21
    assert torch.equal(sig, calculate_sigmas(MS, "normal", 40)[-21:])
    assert sig[0].item() == pytest.approx(1.548160, abs=1e-5)
    assert ksampler_sigmas(MS, "normal", 20, 0.0, get_sampler("euler")).numel() == 0


def test_penultimate_sigma_is_dropped_for_dpm2_and_unipc() -> None:
    for name in ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"):
        sig = ksampler_sigmas(MS, "karras", 20, 1.0, get_sampler(name))
        full = calculate_sigmas(MS, "karras", 21)
        assert len(sig) == 21 and torch.equal(sig[:-1], full[:-2]) and sig[-1] == 0


def test_step_window_rules() -> None:
    sig = calculate_sigmas(MS, "karras", 20)
    first = step_window(sig, 0, 15, force_full_denoise=False)
    assert first is not None and len(first) == 16 and first[-1] > 0
    forced = step_window(sig, 0, 15, force_full_denoise=True)
    assert forced is not None and forced[-1] == 0 and sig[15] > 0  # the input schedule is not mutated
    second = step_window(sig, 15, 10000, force_full_denoise=True)
    assert second is not None and len(second) == 6 and second[0] == sig[15]
    assert step_window(sig, 20, None, False) is None


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_schedule_is_decreasing_float32_and_ends_at_zero(name: str) -> None:
    for steps in (1, 7, 20):
        sig = calculate_sigmas(MS, name, steps)
        assert sig.dtype == torch.float32
        assert sig[-1] == 0
        assert torch.all(sig[:-1] > sig[1:]), (name, steps, sig)
        assert float(sig[0]) <= float(MS.sigma_max) * (1 + 1e-6)


def test_schedule_formulas() -> None:
    lo, hi = float(MS.sigma_min), float(MS.sigma_max)
    exp = calculate_sigmas(MS, "exponential", 5)
    np.testing.assert_allclose(exp[:-1].log().numpy(), np.linspace(np.log(hi), np.log(lo), 5), rtol=1e-5)
    simple = calculate_sigmas(MS, "simple", 4)
    assert simple[:-1].tolist() == [MS.sigmas[i].item() for i in (999, 749, 499, 249)]
    ddim = calculate_sigmas(MS, "ddim_uniform", 20)
    assert len(ddim) == 21 and ddim[0].item() == MS.sigmas[951].item() and ddim[-2].item() == MS.sigmas[1].item()
    assert len(calculate_sigmas(MS, "ddim_uniform", 30)) == 32
    kl = calculate_sigmas(MS, "kl_optimal", 5)
    np.testing.assert_allclose(kl[:-1].atan().numpy(), np.linspace(np.arctan(hi), np.arctan(lo), 5), rtol=1e-5)
    beta = calculate_sigmas(MS, "beta", 20)
    table = MS.sigmas.tolist()
    assert beta[0].item() == table[999] and all(v in table for v in beta[:-1].tolist())
    assert table[1] < beta[-2].item() < table[30]  # ppf(0.05; 0.6, 0.6) * 999 is a small timestep
    lq = calculate_sigmas(MS, "linear_quadratic", 10)
    assert lq[0].item() == pytest.approx(hi) and lq[5].item() == pytest.approx(hi * 0.975, rel=1e-6)


def test_unknown_scheduler_names_the_choices() -> None:
    with pytest.raises(ValueError, match="karras"):
        calculate_sigmas(MS, "fancy", 10)
    with pytest.raises(ValueError, match="steps"):
        calculate_sigmas(MS, "karras", 0)
