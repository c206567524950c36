"""The CFG++, RES, gradient-estimation, DEIS, ER-SDE, SEEDS and SA-Solver samplers on the analytic Gaussian
denoiser of test_sampling_samplers (exact ODE solution and data distribution known), and the CFG++ samplers
through the real CFGDenoiser on a fake analytic model handle."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.sampling.cfg_pp import track_uncond
from engine.sampling.conditioning import resolve_conds
from engine.sampling.deis import deis_coefficients
from engine.sampling.guider import CFGDenoiser, InpaintDenoiser
from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.sa_solver import TauInterval, adams_coefficients
from engine.sampling.samplers import SamplerSpec, get_sampler, make_noise_sampler
from engine.sampling.schedulers import calculate_sigmas
from engine.sampling.sde_solvers import PowerNoiseScaler

MU, S = 0.5, 0.7
MS = ModelSamplingDiscrete()



def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2
    return MU + S * S / (S * S + s2) * (x - MU)


def schedule(spec: SamplerSpec, name: str, steps: int) -> torch.Tensor:
    return calculate_sigmas(MS, name, steps)


def start(sigmas: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(seed))
    return MU + n * math.sqrt(S * S + float(sigmas[0]) ** 2)


def ode_solution(x_t: torch.Tensor, sigma_t: float, sigma: float = 0.0) -> torch.Tensor:
    return MU + (x_t - MU) * math.sqrt(S * S + sigma * sigma) / math.sqrt(S * S + sigma_t * sigma_t)


class FakeHandle:
    """ModelHandle stand-in: x0 = the exact Gaussian denoiser whose mean is the context's mean."""

    def __init__(self) -> None:
        self.model_sampling = MS
        self.calls: list[int] = []

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: Any = None,
                    concat: torch.Tensor | None = None, transformer_options: Any = None) -> torch.Tensor:
        self.calls.append(x.shape[0])
        mu = context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        s2 = sigma.reshape(-1, 1, 1, 1) ** 2
        return mu + S * S / (S * S + s2) * (x - mu)


ODE = TauInterval(0.0, 0.0, 0.0)  # SA-Solver with tau 0 everywhere
SDE = TauInterval(1e9, 0.0, 1.0)  # SA-Solver with tau 1 everywhere


def run(name: str, steps: int, model: Any = gaussian_denoiser, noise_seed: int = 7, **options: Any) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    spec = get_sampler(name)
    sigmas = schedule(spec, "karras", steps)
    x = start(sigmas)
    out = spec.fn(model, x, sigmas, noise_sampler=make_noise_sampler(spec, x, sigmas, noise_seed), **options)
    return out, x, sigmas


def cfg_model(cfg: float = 1.0, pos: float = MU, neg: float = MU) -> CFGDenoiser:
    """The real CFG stage over an analytic handle whose x0 is the Gaussian denoiser with mean = context mean."""
    shape, cpu = torch.Size((1, 4, 32, 32)), torch.device("cpu")
    p = resolve_conds([[torch.full((1, 77, 8), pos), {}]], shape, MS, cpu, "positive")
    n = resolve_conds([[torch.full((1, 77, 8), neg), {}]], shape, MS, cpu, "negative")
    return CFGDenoiser(FakeHandle(), p, n, cfg)


def rel_ode_err(out: torch.Tensor, x: torch.Tensor, sigmas: torch.Tensor) -> float:
    return float((out - ode_solution(x, float(sigmas[0]))).abs().max()) / S


# (name, options, max error at 40 steps relative to S, min error reduction from 10 to 40 steps); about 0.004 is
# the floor set by the final jump from sigma_min to 0, which SEEDS-3 reaches at 10 steps already
ODE_CASES: list[tuple[str, dict[str, Any], float, float]] = [
    ("deis", {}, 0.01, 10), ("res_multistep", {}, 0.02, 10), ("gradient_estimation", {}, 0.2, 2),
    ("er_sde", {"s_noise": 0.0, "noise_scaler": PowerNoiseScaler(0.0)}, 0.02, 10),
    ("seeds_2", {"eta": 0.0}, 0.02, 10), ("seeds_3", {"eta": 0.0}, 0.01, 0.5),
    ("sa_solver", {"tau_func": ODE}, 0.01, 10), ("sa_solver_pece", {"tau_func": ODE}, 0.01, 10),
]


@pytest.mark.parametrize(("name", "options", "tol", "gain"), ODE_CASES)
def test_deterministic_forms_converge_to_the_ode_solution(name: str, options: dict[str, Any], tol: float,
                                                          gain: float) -> None:
    errs = [rel_ode_err(*run(name, steps, **options)) for steps in (10, 40)]
    assert errs[1] < tol, errs
    assert errs[1] < errs[0] / gain, f"{name} does not converge with more steps: {errs}"


@pytest.mark.parametrize("name", ["er_sde", "res_multistep_ancestral", "seeds_2", "seeds_3", "sa_solver",
                                  "sa_solver_pece"])
def test_stochastic_samplers_reproduce_the_data_distribution(name: str) -> None:
    options = {"tau_func": SDE} if name.startswith("sa_solver") else {}
    out, _, _ = run(name, 100, **options)
    assert abs(float(out.mean()) - MU) < 0.04
    assert abs(float(out.std()) / S - 1.0) < 0.10, float(out.std())


# dpmpp_2s_ancestral_cfg_pp is left out here and below: as in ComfyUI its final update uses the midpoint's
# unconditional x0 (see the last test), so it is not its base sampler even when guidance changes nothing
@pytest.mark.parametrize("name", ["euler_ancestral_cfg_pp", "res_multistep_ancestral_cfg_pp"])
def test_stochastic_cfg_pp_samplers_reproduce_the_data_distribution(name: str) -> None:
    out, _, _ = run(name, 60, model=cfg_model())
    assert abs(float(out.mean()) - MU) < 0.04
    assert abs(float(out.std()) / S - 1.0) < 0.10, float(out.std())


def test_gradient_estimation_with_gamma_1_is_euler() -> None:
    got, _, _ = run("gradient_estimation", 12, ge_gamma=1.0)
    want, _, _ = run("euler", 12)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(run("gradient_estimation", 12)[0], want, atol=1e-3)


@pytest.mark.parametrize(("pp", "base"), [
    ("euler_cfg_pp", "euler"), ("euler_ancestral_cfg_pp", "euler_ancestral"), ("dpmpp_2m_cfg_pp", "dpmpp_2m"),
    ("res_multistep_cfg_pp", "res_multistep"),
    ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral"),
    ("gradient_estimation_cfg_pp", "gradient_estimation"),
])
def test_cfg_pp_equals_its_base_sampler_when_guidance_changes_nothing(pp: str, base: str) -> None:
    got, _, _ = run(pp, 12, model=cfg_model())
    want, _, _ = run(base, 12, model=gaussian_denoiser)
    assert float((got - want).abs().max()) < 1e-4 * float(want.abs().max())


def test_euler_cfg_pp_lands_on_the_guided_x0_and_renoises_along_the_unconditional_one() -> None:
    # CFG++ (Chung et al. 2024, Algorithm 1): x_next = x0_guided + sigma_next * (x - x0_uncond) / sigma
    cfg, pos, neg = 3.0, 0.9, 0.1
    sigmas = torch.tensor([4.0, 1.5])
    x = start(sigmas)
    out = get_sampler("euler_cfg_pp").fn(cfg_model(cfg, pos, neg), x, sigmas)
    s = torch.ones(1) * 4.0
    cond = pos + S * S / (S * S + 16.0) * (x - pos)
    uncond = neg + S * S / (S * S + 16.0) * (x - neg)
    guided = uncond + (cond - uncond) * cfg
    assert torch.allclose(out, guided + 1.5 * (x - uncond) / s, atol=1e-5)
    plain = get_sampler("euler").fn(cfg_model(cfg, pos, neg), x, sigmas)
    assert not torch.allclose(out, plain, atol=1e-2)


def test_cfg_pp_evaluates_the_negative_at_cfg_1_without_touching_the_handle() -> None:
    model = cfg_model(1.0, 0.9, 0.1)
    model.model_options = {"sampler_post_cfg_function": []}
    handle: FakeHandle = model.model
    inpaint = InpaintDenoiser(model, MS, torch.zeros(1, 4, 32, 32), torch.zeros(1, 4, 32, 32), None)
    tracked, last_uncond = track_uncond(inpaint)
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    tracked(x, torch.tensor([2.0]))
    assert handle.calls[-1] == 2  # positive and negative in one call, despite cfg 1
    assert torch.allclose(last_uncond(), 0.1 + S * S / (S * S + 4.0) * (x - 0.1), atol=1e-6)
    assert model.model_options == {"sampler_post_cfg_function": []}
    model(x, torch.tensor([2.0]))
    assert handle.calls[-1] == 1  # the original chain still skips the negative at cfg 1


def test_cfg_pp_needs_a_cfg_stage() -> None:
    with pytest.raises(TypeError, match="unconditional prediction"):
        run("euler_cfg_pp", 4)


def test_evaluation_counts() -> None:
    calls = {"n": 0}

    def counting(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return gaussian_denoiser(x, sigma)

    # 10 steps, the last one to sigma 0 is a single evaluation; PECE re-evaluates after each correction
    expected = {"deis": 10, "res_multistep": 10, "gradient_estimation": 10, "er_sde": 10, "seeds_2": 19,
                "seeds_3": 28, "sa_solver": 10, "sa_solver_pece": 19}
    for name, nfe in expected.items():
        calls["n"] = 0
        run(name, 10, model=counting, **({"tau_func": SDE} if name.startswith("sa_solver") else {}))
        assert calls["n"] == nfe, (name, calls["n"])


def test_stochastic_samplers_are_seeded() -> None:
    for name in ("er_sde", "seeds_2", "res_multistep_ancestral"):
        a, _, _ = run(name, 8, noise_seed=1)
        b, _, _ = run(name, 8, noise_seed=1)
        c, _, _ = run(name, 8, noise_seed=2)
        assert torch.equal(a, b) and not torch.allclose(a, c), name


def test_deis_coefficients_integrate_the_sigma_step() -> None:
    # the weight is d sigma / d t of the VP SDE, and Lagrange bases sum to 1: the coefficients of a step
    # add up to sigma_next - sigma
    sigmas = schedule(get_sampler("deis"), "karras", 12)
    for i, row in enumerate(deis_coefficients(sigmas, 3)):
        if row and sigmas[i + 1] > 0:  # the step to 0 is an Euler step (its weight is infinite at t = 0)
            total = float(sum(row))
            want = float(sigmas[i + 1] - sigmas[i])
            assert math.isclose(total, want, rel_tol=2e-3), (i, total, want)


def test_sa_solver_coefficients_are_exact_for_constant_x0() -> None:
    lambdas = torch.tensor([-2.0, -1.2, -0.5], dtype=torch.float64)
    for tau in (0.0, 1.0):
        b = adams_coefficients(torch.tensor(0.3, dtype=torch.float64), lambdas, lambdas[-1],
                               torch.tensor(0.2, dtype=torch.float64), tau)
        h = 0.2 - (-0.5)
        alpha_t = 0.3 * math.exp(0.2)
        assert math.isclose(float(b.sum()), alpha_t * (1 - math.exp(-(1 + tau**2) * h)), rel_tol=1e-9)


def test_sa_solver_without_tau_needs_a_model_sampling() -> None:
    with pytest.raises(ValueError, match="tau_func"):
        run("sa_solver", 4)
    wrapped = InpaintDenoiser(gaussian_denoiser, MS, torch.zeros(1), torch.zeros(1), None)
    out, x, sigmas = run("sa_solver", 10, model=wrapped)  # ComfyUI's default window from the model
    assert torch.isfinite(out).all()


def test_er_sde_checks_its_stage_count() -> None:
    with pytest.raises(ValueError, match="max_stage"):
        run("er_sde", 4, max_stage=4)


def test_dpmpp_2s_ancestral_cfg_pp_shifts_the_last_update_by_the_midpoint_uncond() -> None:
    # ComfyUI's behaviour: its post-CFG hook records the negative x0 of every call, so the final update of a
    # step uses the midpoint evaluation's negative x0 (a measurable difference at cfg != 1)
    cfg, pos, neg = 3.0, 0.9, 0.1
    sigmas = torch.tensor([4.0, 1.5])
    x = start(sigmas)
    out = get_sampler("dpmpp_2s_ancestral_cfg_pp").fn(cfg_model(cfg, pos, neg), x, sigmas,
                                                      noise_sampler=lambda a, b: torch.zeros_like(x), eta=0.0)

    def preds(z: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        c = pos + S * S / (S * S + sigma**2) * (z - pos)
        u = neg + S * S / (S * S + sigma**2) * (z - neg)
        return u + (c - u) * cfg, u

    t, t_next = -math.log(4.0), -math.log(1.5)
    h = t_next - t
    sigma_s = math.exp(-(t + h / 2))
    d, u = preds(x, 4.0)
    x_2 = (sigma_s / 4.0) * (x + d - u) - math.expm1(-h / 2) * d
    d_2, u_2 = preds(x_2, sigma_s)
    want = (1.5 / 4.0) * (x + d - u_2) - math.expm1(-h) * d_2
    assert torch.allclose(out, want, atol=1e-4)
