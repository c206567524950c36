"""SAMPLER nodes with options, the VP / Laplace / manual schedules and AddNoise, on the tiny SD1.5 checkpoint:
default knobs give KSampler's latent for the same sampler name, changed knobs change it as they should,
schedules equal their formulas computed here, AddNoise equals latent + noise * sigma, and the catalogue."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from nodes._base import NodeInputError

STEPS = 4
SEED = 11


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tiny_model: Any) -> Any:
    return tiny_model


@pytest.fixture(scope="module")
def conds() -> tuple[list[Any], list[Any]]:
    gen = torch.Generator().manual_seed(9)
    return [[torch.randn(1, 77, 32, generator=gen), {}]], [[torch.randn(1, 77, 32, generator=gen), {}]]


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def empty() -> dict[str, Any]:
    return {"samples": torch.zeros(1, 4, 8, 16)}


def ksampler(registry: Any, model: Any, conds: Any, sampler: str, scheduler: str = "karras") -> torch.Tensor:
    (out,) = call(registry, "KSampler", model=model, seed=SEED, steps=STEPS, cfg=5.0, sampler_name=sampler,
                  scheduler=scheduler, positive=conds[0], negative=conds[1], latent_image=empty(), denoise=1.0)
    samples: torch.Tensor = out["samples"]
    return samples


def custom(registry: Any, model: Any, conds: Any, node: str, scheduler: str = "karras",
           **options: Any) -> torch.Tensor:
    (smp,) = call(registry, node, **options)
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler=scheduler, steps=STEPS, denoise=1.0)
    out, _ = call(registry, "SamplerCustom", model=model, add_noise=True, noise_seed=SEED, cfg=5.0,
                  positive=conds[0], negative=conds[1], sampler=smp, sigmas=sigmas, latent_image=empty())
    samples: torch.Tensor = out["samples"]
    return samples


# ---------------------------------------------------------------------------------------------- samplers
def test_euler_ancestral_knobs(registry: Any, model: Any, conds: Any) -> None:
    want = ksampler(registry, model, conds, "euler_ancestral")
    got = custom(registry, model, conds, "SamplerEulerAncestral", eta=1.0, s_noise=1.0)
    assert torch.equal(got, want)
    # eta 0: no ancestral noise, Euler steps (the last one jumps straight to x0, so equal to rounding)
    plain = custom(registry, model, conds, "SamplerEulerAncestral", eta=0.0, s_noise=1.0)
    euler = ksampler(registry, model, conds, "euler")
    assert torch.allclose(plain, euler, atol=1e-4) and not torch.allclose(plain, want, atol=1e-2)
    # s_noise 0 keeps the smaller ancestral step but adds no fresh noise: neither of the above
    quiet = custom(registry, model, conds, "SamplerEulerAncestral", eta=1.0, s_noise=0.0)
    assert not torch.allclose(quiet, want, atol=1e-2) and not torch.allclose(quiet, euler, atol=1e-2)


def test_dpmpp_2m_sde_noise_device_and_solver(registry: Any, model: Any, conds: Any) -> None:
    default = dict(solver_type="midpoint", eta=1.0, s_noise=1.0)
    gpu = custom(registry, model, conds, "SamplerDPMPP_2M_SDE", noise_device="gpu", **default)
    assert torch.equal(gpu, ksampler(registry, model, conds, "dpmpp_2m_sde_gpu"))
    cpu = custom(registry, model, conds, "SamplerDPMPP_2M_SDE", noise_device="cpu", **default)
    assert torch.equal(cpu, ksampler(registry, model, conds, "dpmpp_2m_sde"))
    heun = custom(registry, model, conds, "SamplerDPMPP_2M_SDE", solver_type="heun", eta=1.0, s_noise=1.0,
                  noise_device="cpu")
    assert torch.equal(heun, ksampler(registry, model, conds, "dpmpp_2m_sde_heun"))
    ode = custom(registry, model, conds, "SamplerDPMPP_2M_SDE", solver_type="midpoint", eta=0.0, s_noise=1.0,
                 noise_device="cpu")
    # eta 0 is DPM-Solver++(2M) (same update in another form)
    assert torch.allclose(ode, ksampler(registry, model, conds, "dpmpp_2m"), atol=1e-4)
    assert not torch.allclose(ode, cpu, atol=1e-2)


def test_other_sde_and_ancestral_samplers_default_to_ksampler(registry: Any, model: Any, conds: Any) -> None:
    sde = custom(registry, model, conds, "SamplerDPMPP_SDE", eta=1.0, s_noise=1.0, r=0.5, noise_device="cpu")
    assert torch.equal(sde, ksampler(registry, model, conds, "dpmpp_sde"))
    wide = custom(registry, model, conds, "SamplerDPMPP_SDE", eta=1.0, s_noise=1.0, r=0.8, noise_device="cpu")
    assert not torch.allclose(wide, sde, atol=1e-3)
    three = custom(registry, model, conds, "SamplerDPMPP_3M_SDE", eta=1.0, s_noise=1.0, noise_device="gpu")
    assert torch.equal(three, ksampler(registry, model, conds, "dpmpp_3m_sde_gpu"))
    half = custom(registry, model, conds, "SamplerDPMPP_3M_SDE", eta=1.0, s_noise=0.5, noise_device="gpu")
    assert not torch.allclose(half, three, atol=1e-3)
    anc = custom(registry, model, conds, "SamplerDPMPP_2S_Ancestral", eta=1.0, s_noise=1.0)
    assert torch.equal(anc, ksampler(registry, model, conds, "dpmpp_2s_ancestral"))


def test_lms_order(registry: Any, model: Any, conds: Any) -> None:
    four = custom(registry, model, conds, "SamplerLMS", order=4)
    assert torch.equal(four, ksampler(registry, model, conds, "lms"))
    # order 1 is Euler (the last step jumps to x0)
    one = custom(registry, model, conds, "SamplerLMS", order=1)
    assert torch.allclose(one, ksampler(registry, model, conds, "euler"), atol=1e-4)
    assert not torch.allclose(one, four, atol=1e-3)


def test_dpm_adaptive(registry: Any, model: Any, conds: Any) -> None:
    knobs = dict(order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0,
                 accept_safety=0.81, eta=0.0, s_noise=1.0)
    default = custom(registry, model, conds, "SamplerDPMAdaptative", **knobs)
    assert torch.equal(default, ksampler(registry, model, conds, "dpm_adaptive"))
    noisy = custom(registry, model, conds, "SamplerDPMAdaptative", **{**knobs, "eta": 1.0})
    assert torch.isfinite(noisy).all() and not torch.allclose(noisy, default, atol=1e-3)
    again = custom(registry, model, conds, "SamplerDPMAdaptative", **{**knobs, "eta": 1.0})
    assert torch.equal(noisy, again)  # seeded


def test_sampler_option_errors(registry: Any) -> None:
    with pytest.raises(NodeInputError, match="SamplerDPMPP_2M_SDE.*noise_device"):
        call(registry, "SamplerDPMPP_2M_SDE", solver_type="midpoint", eta=1.0, s_noise=1.0, noise_device="tpu")
    with pytest.raises(NodeInputError, match="solver_type"):
        call(registry, "SamplerDPMPP_2M_SDE", solver_type="rk4", eta=1.0, s_noise=1.0, noise_device="cpu")
    with pytest.raises(NodeInputError, match="order"):
        call(registry, "SamplerDPMAdaptative", order=4, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
             icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0)
    with pytest.raises(NodeInputError, match="h_init"):
        call(registry, "SamplerDPMAdaptative", order=3, rtol=0.05, atol=0.0078, h_init=0.0, pcoeff=0.0,
             icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0)
    (smp,) = call(registry, "SamplerEulerAncestral", eta=0.5, s_noise=2.0)
    assert smp.sampler_name == "euler_ancestral" and dict(smp.extra_options) == {"eta": 0.5, "s_noise": 2.0}


# --------------------------------------------------------------------------------------------- schedules
def test_vp_scheduler_formula(registry: Any) -> None:
    (sigmas,) = call(registry, "VPScheduler", steps=5, beta_d=19.9, beta_min=0.1, eps_s=0.001)
    want = []
    for i in range(5):
        t = 1.0 + (0.001 - 1.0) * i / 4
        want.append(math.sqrt(math.exp(19.9 * t * t / 2 + 0.1 * t) - 1))
    assert sigmas.shape == (6,) and sigmas.dtype == torch.float32 and float(sigmas[-1]) == 0.0
    assert torch.allclose(sigmas[:-1], torch.tensor(want), rtol=1e-5)
    (other,) = call(registry, "VPScheduler", steps=5, beta_d=10.0, beta_min=0.1, eps_s=0.001)
    assert float(other[0]) == pytest.approx(math.sqrt(math.exp(10.0 / 2 + 0.1) - 1), rel=1e-5)


def test_laplace_scheduler_formula(registry: Any) -> None:
    steps, smax, smin, mu, beta = 7, 14.614642, 0.0291675, 0.3, 0.5
    (sigmas,) = call(registry, "LaplaceScheduler", steps=steps, sigma_max=smax, sigma_min=smin, mu=mu, beta=beta)
    want = []
    for i in range(steps):
        u = i / (steps - 1)
        d = 0.5 - u
        sign = (d > 0) - (d < 0)
        lam = mu - beta * sign * math.log(1 - 2 * abs(d) + 1e-5)
        want.append(min(max(math.exp(lam), smin), smax))
    assert sigmas.shape == (steps,)  # no trailing 0, as in ComfyUI
    assert torch.allclose(sigmas, torch.tensor(want), rtol=1e-4)
    assert float(sigmas[0]) == pytest.approx(smax) and float(sigmas[-1]) == pytest.approx(smin)
    assert float(sigmas[3]) == pytest.approx(math.exp(mu), rel=1e-4)  # the middle: e^mu


def test_manual_sigmas(registry: Any) -> None:
    (sigmas,) = call(registry, "ManualSigmas", sigmas="14.6, 7,3.5  1 .5 0")
    assert sigmas.dtype == torch.float32
    assert sigmas.tolist() == pytest.approx([14.6, 7.0, 3.5, 1.0, 0.5, 0.0])
    (neg,) = call(registry, "ManualSigmas", sigmas="-1, +2")
    assert neg.tolist() == [-1.0, 2.0]
    (none,) = call(registry, "ManualSigmas", sigmas="")
    assert none.shape == (0,)


# ------------------------------------------------------------------------------------------------ AddNoise
def test_add_noise(registry: Any, model: Any) -> None:
    (noise,) = call(registry, "RandomNoise", noise_seed=3)
    latent = {"samples": torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(1)), "batch_index": [0]}
    sigmas = torch.tensor([10.0, 4.0, 1.5])
    (out,) = call(registry, "AddNoise", model=model, noise=noise, sigmas=sigmas, latent_image=latent)
    drawn = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(3))
    # in model space: latent * 0.18215 + noise * |10 - 1.5|; back in VAE space divided by 0.18215
    assert torch.allclose(out["samples"], latent["samples"] + drawn * 8.5 / 0.18215, rtol=1e-5, atol=1e-4)
    assert out["batch_index"] == [0] and out is not latent
    (one,) = call(registry, "AddNoise", model=model, noise=noise, sigmas=torch.tensor([2.0]), latent_image=empty())
    assert torch.allclose(one["samples"], drawn * 2.0 / 0.18215, rtol=1e-5)
    (same,) = call(registry, "AddNoise", model=model, noise=noise, sigmas=torch.zeros(0), latent_image=latent)
    assert same["samples"] is latent["samples"]
    (zeros,) = call(registry, "DisableNoise")
    (kept,) = call(registry, "AddNoise", model=model, noise=zeros, sigmas=sigmas, latent_image=latent)
    assert torch.allclose(kept["samples"], latent["samples"], atol=1e-6)
    with pytest.raises(NodeInputError, match="AddNoise.*noise"):
        call(registry, "AddNoise", model=model, noise="seed", sigmas=sigmas, latent_image=latent)


# ----------------------------------------------------------------------------------------------- catalogue
def test_catalogue_metadata(registry: Any) -> None:
    info = registry.object_info()
    knob = {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False}
    ea = info["SamplerEulerAncestral"]
    assert ea["input_order"]["required"] == ["eta", "s_noise"]
    assert ea["input"]["required"]["eta"] == ["FLOAT", knob] and ea["input"]["required"]["s_noise"] == ["FLOAT", knob]
    two = info["SamplerDPMPP_2M_SDE"]
    assert two["input_order"]["required"] == ["solver_type", "eta", "s_noise", "noise_device"]
    assert two["input"]["required"]["solver_type"][0] == ["midpoint", "heun"]
    assert two["input"]["required"]["noise_device"][0] == ["gpu", "cpu"]
    assert info["SamplerDPMPP_SDE"]["input_order"]["required"] == ["eta", "s_noise", "r", "noise_device"]
    assert info["SamplerDPMPP_SDE"]["input"]["required"]["r"][1]["default"] == 0.5
    assert info["SamplerDPMPP_3M_SDE"]["input_order"]["required"] == ["eta", "s_noise", "noise_device"]
    assert info["SamplerDPMPP_2S_Ancestral"]["input_order"]["required"] == ["eta", "s_noise"]
    assert info["SamplerLMS"]["input"]["required"]["order"] == ["INT", {"default": 4, "min": 1, "max": 100}]
    ad = info["SamplerDPMAdaptative"]
    assert ad["input_order"]["required"] == ["order", "rtol", "atol", "h_init", "pcoeff", "icoeff", "dcoeff",
                                             "accept_safety", "eta", "s_noise"]
    assert ad["input"]["required"]["order"] == ["INT", {"default": 3, "min": 2, "max": 3}]
    assert {k: ad["input"]["required"][k][1]["default"] for k in ad["input_order"]["required"][1:]} == {
        "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "pcoeff": 0.0, "icoeff": 1.0, "dcoeff": 0.0,
        "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0}
    for name in ("SamplerEulerAncestral", "SamplerLMS", "SamplerDPMPP_3M_SDE", "SamplerDPMPP_2M_SDE",
                 "SamplerDPMPP_SDE", "SamplerDPMPP_2S_Ancestral", "SamplerDPMAdaptative"):
        assert info[name]["output"] == ["SAMPLER"] and info[name]["category"] == "sampling/custom_sampling/samplers"
    vp = info["VPScheduler"]
    assert vp["input_order"]["required"] == ["steps", "beta_d", "beta_min", "eps_s"]
    assert vp["input"]["required"]["eps_s"] == ["FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0,
                                                          "step": 0.0001, "round": False}]
    lp = info["LaplaceScheduler"]
    assert lp["input_order"]["required"] == ["steps", "sigma_max", "sigma_min", "mu", "beta"]
    assert lp["input"]["required"]["mu"] == ["FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.1,
                                                       "round": False}]
    for name in ("VPScheduler", "LaplaceScheduler"):
        assert info[name]["output"] == ["SIGMAS"] and info[name]["category"] == "sampling/custom_sampling/schedulers"
    ms = info["ManualSigmas"]
    assert ms["input"]["required"]["sigmas"] == ["STRING", {"default": "1, 0.5", "multiline": False}]
    assert ms["output"] == ["SIGMAS"]
    an = info["AddNoise"]
    assert an["input_order"]["required"] == ["model", "noise", "sigmas", "latent_image"]
    assert an["output"] == ["LATENT"] and an["category"] == "_for_testing/custom_sampling/noise"
