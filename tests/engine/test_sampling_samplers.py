"""Every sampler on an analytic Gaussian denoiser, where the exact answers are known.

Data x0 ~ N(MU, S^2) per element. For x = x0 + sigma * n the exact denoiser is
D(x, sigma) = MU + S^2 / (S^2 + sigma^2) * (x - MU), and the probability-flow ODE carries a point
x(sigma_T) to MU + (x(sigma_T) - MU) * sqrt(S^2 + sigma^2) / sqrt(S^2 + sigma_T^2).
Deterministic samplers must converge to that ODE solution; stochastic ones must produce N(MU, S^2) samples.
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.samplers import SAMPLER_NAMES, SamplerSpec, get_sampler, make_noise_sampler
from engine.sampling.schedulers import calculate_sigmas

MU, S = 0.5, 0.7
MS = ModelSamplingDiscrete()


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2
    return MU + S * S / (S * S + s2) * (x - MU)


def schedule(spec: SamplerSpec, name: str, steps: int) -> torch.Tensor:
    if spec.discard_penultimate_sigma:
        s = calculate_sigmas(MS, name, steps + 1)
        return torch.cat([s[:-2], s[-1:]])
    return calculate_sigmas(MS, name, steps)


def start(sigmas: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(seed))
    return MU + n * math.sqrt(S * S + float(sigmas[0]) ** 2)


def ode_solution(x_t: torch.Tensor, sigma_t: float, sigma: float = 0.0) -> torch.Tensor:
    return MU + (x_t - MU) * math.sqrt(S * S + sigma * sigma) / math.sqrt(S * S + sigma_t * sigma_t)


def run(name: str, steps: int, sched: str = "karras", seed: int = 0, noise_seed: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spec = get_sampler(name)
    sigmas = schedule(spec, sched, steps)
    x = start(sigmas, seed)
    out = spec.fn(gaussian_denoiser, x, sigmas, noise_sampler=make_noise_sampler(spec, x, sigmas, noise_seed))
    return out, x, sigmas


# (name, max error at 40 steps relative to S, min error reduction from 10 to 40 steps): 4x more steps
# shrink a first-order method's error ~4x and a higher-order one's much more.
# About 0.004 is the floor set by the final jump from sigma_min to 0 (x = x0 estimate).
ODE_SAMPLERS = [
    ("euler", 0.25, 3.5), ("ddim", 0.25, 3.5), ("heun", 0.02, 10), ("dpm_2", 0.01, 10), ("lms", 0.01, 10),
    ("dpmpp_2m", 0.02, 10), ("uni_pc", 0.01, 10), ("uni_pc_bh2", 0.01, 10), ("ipndm", 0.01, 10),
    ("ipndm_v", 0.01, 2.5), ("heunpp2", 0.25, 3.5),
]


@pytest.mark.parametrize(("name", "tol", "gain"), ODE_SAMPLERS)
def test_deterministic_samplers_converge_to_the_ode_solution(name: str, tol: float, gain: float) -> None:
    errs = []
    for steps in (10, 40):
        out, x, sigmas = run(name, steps)
        errs.append(float((out - ode_solution(x, float(sigmas[0]))).abs().max()) / S)
    assert errs[1] < tol, errs
    assert errs[1] < errs[0] / gain, f"{name} does not converge with more steps: {errs}"


def test_dpm_fast_reaches_the_ode_solution_at_sigma_min() -> None:
    out, x, sigmas = run("dpm_fast", 20)
    exact = ode_solution(x, float(sigmas[0]), float(sigmas[-2]))
    assert float((out - exact).abs().max()) / S < 1.5e-2


def test_dpm_adaptive_meets_its_tolerance_at_sigma_min() -> None:
    calls = {"n": 0}

    def counting(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return gaussian_denoiser(x, sigma)

    spec = get_sampler("dpm_adaptive")
    sigmas = schedule(spec, "karras", 10)
    x = start(sigmas)
    exact = ode_solution(x, float(sigmas[0]), float(sigmas[-2]))
    errs, nfes = [], []
    # ComfyUI's defaults, then tight: the error test is relative to |x|, which is ~15 at the start
    for rtol, atol in ((0.05, 0.0078), (1e-4, 1e-5)):
        calls["n"] = 0
        out = spec.fn(counting, x, sigmas, rtol=rtol, atol=atol)
        errs.append(float((out - exact).abs().max()) / S)
        nfes.append(calls["n"])
    assert errs[0] < 0.25 and errs[1] < 5e-3, errs
    assert nfes[1] > nfes[0] > 0  # the error controller, not the schedule, picks the steps


def test_second_order_beats_euler() -> None:
    euler, x, sigmas = run("euler", 20)
    exact = ode_solution(x, float(sigmas[0]))
    for name in ("heun", "dpmpp_2m", "uni_pc"):
        other, _, _ = run(name, 20)
        assert (other - exact).abs().max() < (euler - exact).abs().max() / 3, name


STOCHASTIC = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
              "dpmpp_2m_sde_heun", "dpmpp_3m_sde", "ddpm"]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_reproduce_the_data_distribution(name: str) -> None:
    out, _, _ = run(name, 100)
    assert abs(float(out.mean()) - MU) < 0.04
    assert abs(float(out.std()) / S - 1.0) < 0.10, float(out.std())


@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"])
def test_stochastic_samplers_are_seeded(name: str) -> None:
    a, _, _ = run(name, 8, noise_seed=1)
    b, _, _ = run(name, 8, noise_seed=1)
    c, _, _ = run(name, 8, noise_seed=2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_stochastic_samplers_refuse_to_run_without_noise() -> None:
    spec = get_sampler("euler_ancestral")
    sigmas = schedule(spec, "karras", 4)
    with pytest.raises(ValueError, match="noise_sampler"):
        spec.fn(gaussian_denoiser, start(sigmas), sigmas)


def test_lcm_jumps_to_x0_and_renoises_with_the_given_noise() -> None:
    spec = get_sampler("lcm")
    sigmas = schedule(spec, "karras", 3)
    x = start(sigmas)
    draws: list[torch.Tensor] = []

    def noise(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        draws.append(torch.full_like(x, float(len(draws) + 1)))
        return draws[-1]

    out = spec.fn(gaussian_denoiser, x, sigmas, noise_sampler=noise)
    expect = x
    for i in range(3):
        expect = gaussian_denoiser(expect, sigmas[i] * torch.ones(1))
        if sigmas[i + 1] > 0:
            expect = expect + sigmas[i + 1] * float(i + 1)
    assert len(draws) == 2
    assert torch.allclose(out, expect, atol=1e-6)


def test_callback_sees_every_step_in_order() -> None:
    for name in ("euler", "dpmpp_2m", "uni_pc", "heun"):
        spec = get_sampler(name)
        sigmas = schedule(spec, "karras", 6)
        seen: list[int] = []
        spec.fn(gaussian_denoiser, start(sigmas), sigmas, callback=lambda i, d, x, seen=seen: seen.append(i))
        assert seen == list(range(6)), name


def test_model_evaluation_counts() -> None:
    calls = {"n": 0}

    def counting(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return gaussian_denoiser(x, sigma)

    expected = {"euler": 10, "dpmpp_2m": 10, "uni_pc": 10, "heun": 19, "dpm_2": 19, "dpm_fast": 10, "ipndm": 10,
                "heunpp2": 27}
    for name, nfe in expected.items():
        calls["n"] = 0
        spec = get_sampler(name)
        sigmas = schedule(spec, "karras", 10)
        spec.fn(counting, start(sigmas), sigmas, noise_sampler=make_noise_sampler(spec, start(sigmas), sigmas, 1))
        assert calls["n"] == nfe, (name, calls["n"])


def test_sampler_names_follow_comfyui_order_and_unknown_names_raise() -> None:
    assert SAMPLER_NAMES[:4] == ("euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp")
    assert SAMPLER_NAMES[-3:] == ("ddim", "uni_pc", "uni_pc_bh2")
    for name in SAMPLER_NAMES:
        assert get_sampler(name).fn is not None
    with pytest.raises(ValueError, match="euler_cfg_pp"):  # the message lists the implemented names
        get_sampler("no_such_sampler")
