"""ComfyUI's `comfy.k_diffusion.sampling` for packs: Loom's sampler functions and schedules under k-diffusion's
names.

Every `sample_*` here is Loom's own implementation with k-diffusion's signature
`sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, **knobs)`; the `get_sigmas_*`
schedules return sigmas with a trailing zero. Samplers Loom lacks are absent (AttributeError / ImportError
naming them).
"""
from __future__ import annotations

from typing import Any

import torch

from engine.sampling.dpm_solvers import (
    sample_dpm_adaptive,
    sample_dpm_fast,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_dpmpp_sde,
)
from engine.sampling.k_samplers import (
    ancestral_step as get_ancestral_step,
)
from engine.sampling.k_samplers import (
    sample_ddpm,
    sample_dpm_2,
    sample_dpm_2_ancestral,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_lcm,
    sample_lms,
    to_d,
)
from engine.sampling.multistep import sample_heunpp2, sample_ipndm, sample_ipndm_v
from engine.sampling.noise import BrownianTreeNoiseSampler
from engine.sampling.schedulers import append_zero, exponential_sigmas, karras_sigmas

__all__ = [
    "BrownianTreeNoiseSampler", "append_zero", "default_noise_sampler", "get_ancestral_step",
    "get_sigmas_exponential", "get_sigmas_karras", "get_sigmas_polyexponential", "sample_ddpm", "sample_dpm_2",
    "sample_dpm_2_ancestral", "sample_dpm_adaptive", "sample_dpm_fast", "sample_dpmpp_2m", "sample_dpmpp_2m_sde",
    "sample_dpmpp_2s_ancestral", "sample_dpmpp_3m_sde", "sample_dpmpp_sde", "sample_euler",
    "sample_euler_ancestral", "sample_heun", "sample_heunpp2", "sample_ipndm", "sample_ipndm_v", "sample_lcm",
    "sample_lms", "to_d",
]


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: Any = "cpu"
                      ) -> torch.Tensor:
    """Karras et al. (2022) schedule of `n` steps plus the trailing zero."""
    return karras_sigmas(n, sigma_min, sigma_max, rho).to(device)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device: Any = "cpu") -> torch.Tensor:
    """Log-linear schedule of `n` steps plus the trailing zero."""
    return exponential_sigmas(n, sigma_min, sigma_max).to(device)


def get_sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, device: Any = "cpu"
                               ) -> torch.Tensor:
    """k-diffusion's polynomial-in-log-sigma schedule (rho=1 is the exponential schedule)."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    sigmas = torch.exp(ramp * (torch.log(torch.tensor(sigma_max)) - torch.log(torch.tensor(sigma_min)))
                       + torch.log(torch.tensor(sigma_min)))
    return append_zero(sigmas)


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> Any:
    """k-diffusion's `noise_sampler(sigma, sigma_next)` drawing Gaussian noise shaped like `x`."""
    from engine.sampling.noise import gaussian_noise_sampler

    return gaussian_noise_sampler(x, seed)
