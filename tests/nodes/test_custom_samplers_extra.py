"""SAMPLER option nodes (SamplerEulerCFGpp, SamplerEulerAncestralCFGPP, SamplerER_SDE, SamplerSASolver,
SamplerLCMUpscale) and SIGMAS nodes (AlignYourSteps, GITS, OptimalSteps, ExtendIntermediateSigmas,
SamplingPercentToSigma): inputs as ComfyUI declares them, values, and errors that name the input."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from engine.sampling.custom import resolve_sampler
from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.noise import gaussian_noise_sampler
from engine.sampling.sigma_tables import AYS_LEVELS
from nodes._base import NodeInputError
from nodes.custom_samplers_extra import (
    SamplerER_SDE,
    SamplerEulerAncestralCFGPP,
    SamplerEulerCFGpp,
    SamplerLCMUpscale,
    SamplerSASolver,
)
from nodes.custom_schedulers_extra import (
    AlignYourStepsScheduler,
    ExtendIntermediateSigmas,
    GITSScheduler,
    OptimalStepsScheduler,
    SamplingPercentToSigma,
)


@dataclass
class Model:
    model_sampling: ModelSamplingDiscrete = field(default_factory=ModelSamplingDiscrete)


def test_align_your_steps_uses_the_table_and_interpolates_in_log_space() -> None:
    (ten,) = AlignYourStepsScheduler().get_sigmas("SD1", 10, 1.0)
    assert torch.allclose(ten[:-1], torch.tensor(AYS_LEVELS["SD1"][:-1]))
    assert ten[-1] == 0 and len(ten) == 11
    (twenty,) = AlignYourStepsScheduler().get_sigmas("SDXL", 20, 1.0)
    table = torch.tensor(AYS_LEVELS["SDXL"])
    assert torch.allclose(twenty[0:-1:2], table[:-1], rtol=1e-6)  # every other point is a table point
    mid = (table[:-1].log() + table[1:].log()).div(2).exp()
    assert torch.allclose(twenty[1::2], mid, rtol=1e-5)  # the others are log midpoints
    (half,) = AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.5)
    assert torch.allclose(half[:-1], ten[5:-1]) and len(half) == 6
    assert AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.0)[0].numel() == 0


def test_gits_table_rows_and_interpolation() -> None:
    (ten,) = GITSScheduler().get_sigmas(1.2, 10, 1.0)
    assert len(ten) == 11 and ten[-1] == 0 and math.isclose(float(ten[0]), 14.61464119, rel_tol=1e-6)
    assert bool((ten[:-1].diff() < 0).all())
    (many,) = GITSScheduler().get_sigmas(1.2, 30, 1.0)
    assert len(many) == 31 and bool((many[:-1].diff() < 0).all())
    (low,) = GITSScheduler().get_sigmas(0.8, 2, 1.0)
    assert torch.allclose(low, torch.tensor([14.61464119, 7.49001646, 0.0]))
    with pytest.raises(NodeInputError, match="coeff"):
        GITSScheduler().get_sigmas(0.83, 10, 1.0)


def test_optimal_steps_is_a_flow_schedule() -> None:
    (sig,) = OptimalStepsScheduler().get_sigmas("FLUX", 10, 1.0)
    assert math.isclose(float(sig[0]), 0.9968, rel_tol=1e-6) and sig[-1] == 0 and len(sig) == 11
    with pytest.raises(NodeInputError, match="model_type"):
        OptimalStepsScheduler().get_sigmas("SD1", 10, 1.0)


def test_extend_intermediate_sigmas() -> None:
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])
    (lin,) = ExtendIntermediateSigmas().extend(sigmas, 2, -1.0, 2.0, "linear")
    assert torch.allclose(lin, torch.tensor([10.0, 7.5, 5.0, 3.0, 1.0, 0.0]))
    (cos,) = ExtendIntermediateSigmas().extend(sigmas, 3, 6.0, 0.0, "cosine")
    s1, s2 = math.sin(math.pi / 6), math.sin(math.pi / 3)
    want = [10.0, 5.0, 5 - 4 * s1, 5 - 4 * s2, 1.0, 1 - s1, 1 - s2, 0.0]
    assert torch.allclose(cos, torch.tensor(want), atol=1e-6)
    with pytest.raises(NodeInputError, match="spacing"):
        ExtendIntermediateSigmas().extend(sigmas, 2, -1.0, 2.0, "cubic")


def test_sampling_percent_to_sigma() -> None:
    ms = ModelSamplingDiscrete()
    node = SamplingPercentToSigma()
    assert node.get_sigma(Model(), 0.0, False) == (999999999.9,)
    assert node.get_sigma(Model(), 0.0, True) == (float(ms.sigma_max),)
    assert node.get_sigma(Model(), 1.0, True) == (float(ms.sigma_min),)
    assert node.get_sigma(Model(), 0.5, False) == (ms.percent_to_sigma(0.5),)
    with pytest.raises(NodeInputError, match="model"):
        node.get_sigma(None, 0.5, False)


def test_sampler_option_nodes_bind_their_knobs() -> None:
    (choice,) = SamplerEulerAncestralCFGPP().get_sampler(0.5, 0.9)
    assert choice.sampler_name == "euler_ancestral_cfg_pp" and dict(choice.extra_options) == {"eta": 0.5,
                                                                                               "s_noise": 0.9}
    (ode,) = SamplerER_SDE().get_sampler("ODE", 2, 1.0, 1.0)
    assert ode.extra_options["s_noise"] == 0.0 and ode.extra_options["noise_scaler"].eta == 0.0
    (er,) = SamplerER_SDE().get_sampler("ER-SDE", 3, 1.0, 1.0)
    assert er.extra_options["noise_scaler"] is None and er.extra_options["max_stage"] == 3
    with pytest.raises(NodeInputError, match="solver_type"):
        SamplerER_SDE().get_sampler("SDE", 3, 1.0, 1.0)
    (sa,) = SamplerSASolver().get_sampler(Model(), 0.6, 0.1, 0.7, 0.9, 2, 2, True, True)
    tau = sa.extra_options["tau_func"]
    ms = ModelSamplingDiscrete()
    assert tau(torch.tensor(ms.percent_to_sigma(0.4))) == 0.6
    assert tau(torch.tensor(ms.percent_to_sigma(0.05))) == 0.0 and tau(torch.tensor(0.03)) == 0.0
    assert resolve_sampler(sa).fn is not None
    (regular,) = SamplerEulerCFGpp().get_sampler("regular")
    assert regular.sampler_name == "euler_cfg_pp"
    (alternative,) = SamplerEulerCFGpp().get_sampler("alternative")
    assert resolve_sampler(alternative).fn.__name__ == "sample_euler_cfg_pp_alt"


def test_lcm_upscale_grows_the_latent_to_the_ratio() -> None:
    (spec,) = SamplerLCMUpscale().get_sampler(2.0, -1, "bilinear")
    sigmas = torch.tensor([14.6, 6.0, 2.0, 0.5, 0.0])
    x = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(0)) * 14.6
    seen: list[tuple[int, ...]] = []

    def denoiser(z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(z.shape))
        return z / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    out = spec.fn(denoiser, x, sigmas, noise_sampler=gaussian_noise_sampler(x, 5))
    # default: len(sigmas) // 2 + 1 = 3 ramp points 1 -> 1.5 -> 2, reached after the second step
    assert seen == [(1, 4, 8, 12), (1, 4, 12, 18), (1, 4, 16, 24), (1, 4, 16, 24)]
    assert out.shape == (1, 4, 16, 24)


def test_defaults_match_comfyui() -> None:
    sa = SamplerSASolver.INPUT_TYPES()["required"]
    assert [k for k in sa] == ["model", "eta", "sde_start_percent", "sde_end_percent", "s_noise", "predictor_order",
                               "corrector_order", "use_pece", "simple_order_2"]
    assert sa["sde_start_percent"][1]["default"] == 0.2 and sa["corrector_order"][1]["default"] == 4
    er = SamplerER_SDE.INPUT_TYPES()["required"]
    assert er["solver_type"][0] == ["ER-SDE", "Reverse-time SDE", "ODE"] and er["max_stage"][1]["default"] == 3
    assert GITSScheduler.INPUT_TYPES()["required"]["coeff"][1]["default"] == 1.20
    assert SamplerEulerCFGpp.DISPLAY_NAME == "SamplerEulerCFG++" and SamplerEulerCFGpp.CATEGORY == "_for_testing"
    assert ExtendIntermediateSigmas.CATEGORY == "sampling/custom_sampling/sigmas"
    assert AlignYourStepsScheduler.CATEGORY == "sampling/custom_sampling/schedulers"
    assert SamplingPercentToSigma.RETURN_NAMES == ("sigma_value",)




def test_lcm_upscale_noise_continues_the_initial_noise_stream() -> None:
    # ComfyUI draws randn_like from the global generator its initial-noise draw left behind; the seeded
    # noise sampler replays that stream: skip one initial-noise draw, then the values in order
    (spec,) = SamplerLCMUpscale().get_sampler(2.0, 1, "nearest-exact")
    sigmas = torch.tensor([5.0, 2.0, 1.0, 0.0])
    x = torch.zeros(1, 4, 4, 8)
    seen: list[torch.Tensor] = []

    def denoiser(z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return torch.zeros_like(z)

    spec.fn(denoiser, x, sigmas, noise_sampler=gaussian_noise_sampler(x, 11))
    gen = torch.Generator().manual_seed(11)
    torch.randn(1, 4, 4, 8, generator=gen)  # the initial noise
    first = torch.randn(1, 4, 8, 16, generator=gen)  # upscaled after step 0 (one scale step)
    second = torch.randn(1, 4, 8, 16, generator=gen)
    assert torch.equal(seen[1], 2.0 * first) and torch.equal(seen[2], 1.0 * second)
