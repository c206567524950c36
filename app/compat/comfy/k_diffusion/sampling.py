"""ComfyUI's `comfy.k_diffusion.sampling` for packs: Loom's sampler functions and schedules under k-diffusion's
names.

Every `sample_*` here runs Loom's own implementation behind k-diffusion's signature
`sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, **knobs)`:
`model(x, sigma, **extra_args)` is the denoiser, `callback` gets k-diffusion's `{"x", "i", "sigma",
"sigma_hat", "denoised"}` dict, a stochastic sampler without `noise_sampler` draws from
`extra_args["seed"]`; a knob Loom's sampler does not take is a TypeError. The `get_sigmas_*` schedules
return sigmas with a trailing zero. Samplers Loom lacks are absent (AttributeError / ImportError naming them).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from engine.sampling import dpm_solvers, k_samplers, multistep
from engine.sampling.k_samplers import ancestral_step as get_ancestral_step
from engine.sampling.k_samplers import to_d
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


def _k_diffusion_signature(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    accepted = set(inspect.signature(fn).parameters) - {"model", "x", "sigmas", "noise_sampler", "callback"}

    @functools.wraps(fn)
    def sample(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
               extra_args: dict[str, Any] | None = None, callback: Callable[[dict[str, Any]], Any] | None = None,
               disable: Any = None, noise_sampler: Any = None, **knobs: Any) -> torch.Tensor:
        unknown = sorted(set(knobs) - accepted)
        if unknown:
            raise TypeError(f"comfy.k_diffusion.sampling.{fn.__name__}: Loom's sampler takes no {unknown} "
                            f"(it takes {sorted(accepted) or 'no extra options'})")
        extra = dict(extra_args or {})
        if noise_sampler is None:
            noise_sampler = default_noise_sampler(x, extra.get("seed"))

        def denoiser(x_: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return model(x_, sigma, **extra)

        def report(i: int, denoised: torch.Tensor, x_: torch.Tensor) -> None:
            assert callback is not None
            callback({"x": x_, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})

        return fn(denoiser, x, sigmas, noise_sampler=noise_sampler, callback=report if callback else None, **knobs)

    return sample


sample_euler = _k_diffusion_signature(k_samplers.sample_euler)
sample_euler_ancestral = _k_diffusion_signature(k_samplers.sample_euler_ancestral)
sample_heun = _k_diffusion_signature(k_samplers.sample_heun)
sample_dpm_2 = _k_diffusion_signature(k_samplers.sample_dpm_2)
sample_dpm_2_ancestral = _k_diffusion_signature(k_samplers.sample_dpm_2_ancestral)
sample_lms = _k_diffusion_signature(k_samplers.sample_lms)
sample_lcm = _k_diffusion_signature(k_samplers.sample_lcm)
sample_ddpm = _k_diffusion_signature(k_samplers.sample_ddpm)
sample_dpmpp_2m = _k_diffusion_signature(dpm_solvers.sample_dpmpp_2m)
sample_dpmpp_2s_ancestral = _k_diffusion_signature(dpm_solvers.sample_dpmpp_2s_ancestral)
sample_dpmpp_sde = _k_diffusion_signature(dpm_solvers.sample_dpmpp_sde)
sample_dpmpp_2m_sde = _k_diffusion_signature(dpm_solvers.sample_dpmpp_2m_sde)
sample_dpmpp_3m_sde = _k_diffusion_signature(dpm_solvers.sample_dpmpp_3m_sde)
sample_dpm_fast = _k_diffusion_signature(dpm_solvers.sample_dpm_fast)
sample_dpm_adaptive = _k_diffusion_signature(dpm_solvers.sample_dpm_adaptive)
sample_ipndm = _k_diffusion_signature(multistep.sample_ipndm)
sample_ipndm_v = _k_diffusion_signature(multistep.sample_ipndm_v)
sample_heunpp2 = _k_diffusion_signature(multistep.sample_heunpp2)


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
