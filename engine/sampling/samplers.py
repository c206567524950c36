"""The sampler table: ComfyUI sampler names -> implementation, noise kind and schedule adjustments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch

from engine.sampling import (
    cfg_pp,
    deis,
    dpm_solvers,
    k_samplers,
    multistep,
    res_multistep,
    sa_solver,
    sde_solvers,
    unipc,
)
from engine.sampling.noise import BrownianTreeNoiseSampler, NoiseSampler, gaussian_noise_sampler

NoiseKind = Literal["none", "gaussian", "brownian", "brownian_device"]
SamplerFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """How to run one named sampler.

    Parameters:
        fn: ``fn(model, x, sigmas, noise_sampler=None, callback=None) -> x``.
        noise: which per-step noise it draws: none, per-step Gaussian (seed + 1 on CPU), or a Brownian tree
            (on the CPU; ``brownian_device`` = ComfyUI's ``_gpu`` variants, a tree on x's device).
        discard_penultimate_sigma: schedule computed for steps + 1 and its second-to-last sigma dropped.
        random_inpaint_noise: the noise-mask blend uses fresh noise from ``seed + 1`` (ComfyUI's ddim).
    """

    fn: SamplerFn
    noise: NoiseKind = "none"
    discard_penultimate_sigma: bool = False
    random_inpaint_noise: bool = False


_SPECS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(k_samplers.sample_euler),
    "euler_ancestral": SamplerSpec(k_samplers.sample_euler_ancestral, "gaussian"),
    "heun": SamplerSpec(k_samplers.sample_heun),
    "heunpp2": SamplerSpec(multistep.sample_heunpp2),
    "dpm_2": SamplerSpec(k_samplers.sample_dpm_2, discard_penultimate_sigma=True),
    "dpm_2_ancestral": SamplerSpec(k_samplers.sample_dpm_2_ancestral, "gaussian", discard_penultimate_sigma=True),
    "lms": SamplerSpec(k_samplers.sample_lms),
    "dpm_fast": SamplerSpec(dpm_solvers.sample_dpm_fast),
    "dpm_adaptive": SamplerSpec(dpm_solvers.sample_dpm_adaptive, "gaussian"),  # noise used only at eta > 0
    "dpmpp_2s_ancestral": SamplerSpec(dpm_solvers.sample_dpmpp_2s_ancestral, "gaussian"),
    "dpmpp_sde": SamplerSpec(dpm_solvers.sample_dpmpp_sde, "brownian"),
    "dpmpp_sde_gpu": SamplerSpec(dpm_solvers.sample_dpmpp_sde, "brownian_device"),
    "dpmpp_2m": SamplerSpec(dpm_solvers.sample_dpmpp_2m),
    "dpmpp_2m_sde": SamplerSpec(dpm_solvers.sample_dpmpp_2m_sde, "brownian"),
    "dpmpp_2m_sde_gpu": SamplerSpec(dpm_solvers.sample_dpmpp_2m_sde, "brownian_device"),
    "dpmpp_2m_sde_heun": SamplerSpec(partial(dpm_solvers.sample_dpmpp_2m_sde, solver_type="heun"), "brownian"),
    "dpmpp_2m_sde_heun_gpu": SamplerSpec(
        partial(dpm_solvers.sample_dpmpp_2m_sde, solver_type="heun"), "brownian_device"
    ),
    "dpmpp_3m_sde": SamplerSpec(dpm_solvers.sample_dpmpp_3m_sde, "brownian"),
    "dpmpp_3m_sde_gpu": SamplerSpec(dpm_solvers.sample_dpmpp_3m_sde, "brownian_device"),
    "ddpm": SamplerSpec(k_samplers.sample_ddpm, "gaussian"),
    "lcm": SamplerSpec(k_samplers.sample_lcm, "gaussian"),
    "ipndm": SamplerSpec(multistep.sample_ipndm),
    "ipndm_v": SamplerSpec(multistep.sample_ipndm_v),
    "ddim": SamplerSpec(k_samplers.sample_euler, random_inpaint_noise=True),
    "uni_pc": SamplerSpec(unipc.sample_uni_pc, discard_penultimate_sigma=True),
    "uni_pc_bh2": SamplerSpec(unipc.sample_uni_pc_bh2, discard_penultimate_sigma=True),
    "euler_cfg_pp": SamplerSpec(cfg_pp.sample_euler_cfg_pp),
    "euler_ancestral_cfg_pp": SamplerSpec(cfg_pp.sample_euler_ancestral_cfg_pp, "gaussian"),
    "dpmpp_2s_ancestral_cfg_pp": SamplerSpec(cfg_pp.sample_dpmpp_2s_ancestral_cfg_pp, "gaussian"),
    "dpmpp_2m_cfg_pp": SamplerSpec(cfg_pp.sample_dpmpp_2m_cfg_pp),
    "deis": SamplerSpec(deis.sample_deis),
    "res_multistep": SamplerSpec(res_multistep.sample_res_multistep),
    "res_multistep_cfg_pp": SamplerSpec(res_multistep.sample_res_multistep_cfg_pp),
    "res_multistep_ancestral": SamplerSpec(res_multistep.sample_res_multistep_ancestral, "gaussian"),
    "res_multistep_ancestral_cfg_pp": SamplerSpec(res_multistep.sample_res_multistep_ancestral_cfg_pp, "gaussian"),
    "gradient_estimation": SamplerSpec(res_multistep.sample_gradient_estimation),
    "gradient_estimation_cfg_pp": SamplerSpec(res_multistep.sample_gradient_estimation_cfg_pp),
    "er_sde": SamplerSpec(sde_solvers.sample_er_sde, "gaussian"),
    "seeds_2": SamplerSpec(sde_solvers.sample_seeds_2, "gaussian"),
    "seeds_3": SamplerSpec(sde_solvers.sample_seeds_3, "gaussian"),
    "sa_solver": SamplerSpec(sa_solver.sample_sa_solver, "gaussian"),
    "sa_solver_pece": SamplerSpec(sa_solver.sample_sa_solver_pece, "gaussian"),
}

# ComfyUI's option order, restricted to what is implemented here.
_COMFY_ORDER = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu",
    "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation",
    "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim",
    "uni_pc", "uni_pc_bh2",
)
SAMPLER_NAMES: tuple[str, ...] = tuple(n for n in _COMFY_ORDER if n in _SPECS)


def get_sampler(name: str) -> SamplerSpec:
    """The spec of a sampler name; raises ``ValueError`` listing the implemented names."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown or unsupported sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}"
        ) from None


def make_noise_sampler(spec: SamplerSpec, x: torch.Tensor, sigmas: torch.Tensor, seed: int | None) -> NoiseSampler | None:
    """The per-step noise source a sampler needs, seeded as ComfyUI seeds it."""
    if spec.noise == "none":
        return None
    if spec.noise == "gaussian":
        return gaussian_noise_sampler(x, seed)
    positive = sigmas[sigmas > 0]
    if positive.numel() == 0:
        return None
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=spec.noise == "brownian")
