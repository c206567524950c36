"""RES multistep and gradient-estimation samplers, each also in a CFG++ form (see ``cfg_pp``).

- ``res_multistep``: the second-order multistep exponential integrator of Zhang, Tao & Chen et al.
  (RES, "Improving the Diffusion Models' Sampling with Exponential Integrators: Refined Exponential
  Solver", arXiv:2308.02157), in half-log-SNR time lambda = -log(sigma); optional ancestral noise (eta).
- ``gradient_estimation``: Euler plus a gradient-estimation correction gamma * (d - d_prev)
  (Permenter & Yuan 2024, "Interpreting and Improving Diffusion Models from an Optimization Perspective").

Arithmetic follows ComfyUI's k-diffusion so results match it to float rounding. Signature as in
``k_samplers``: ``(model, x, sigmas, noise_sampler=None, callback=None, **knobs)``.
"""

from __future__ import annotations

import torch

from engine.sampling.cfg_pp import track_uncond
from engine.sampling.k_samplers import (
    Denoiser,
    StepCallback,
    ancestral_step,
    batch_ones,
    denoise_and_report,
    require_noise,
    to_d,
)
from engine.sampling.noise import NoiseSampler


def _phi1(t: torch.Tensor) -> torch.Tensor:
    return torch.expm1(t) / t


def _phi2(t: torch.Tensor) -> torch.Tensor:
    return (_phi1(t) - 1.0) / t


@torch.no_grad()
def res_multistep(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    s_noise: float = 1.0, eta: float = 1.0, cfg_pp: bool = False,
) -> torch.Tensor:
    """RES second-order multistep (arXiv:2308.02157, its multistep scheme with c2 from the last step);
    Euler on the first step and wherever the step lands on sigma 0. ``eta`` > 0 steps to sigma_down and
    adds sigma_up of fresh noise (ancestral); ``cfg_pp`` renoises along the unconditional x0."""
    last_uncond = None
    if cfg_pp:
        model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    old_sigma_down: torch.Tensor | None = None
    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        uncond = last_uncond() if last_uncond is not None else denoised
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0 or old_denoised is None or old_sigma_down is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old = sigmas[i].log().neg(), old_sigma_down.log().neg()
            t_next, t_prev = sigma_down.log().neg(), sigmas[i - 1].log().neg()
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1, phi2 = _phi1(-h), _phi2(-h)
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = h.neg().exp() * x + h * (b1 * uncond + b2 * old_denoised)
        if sigmas[i + 1] > 0 and bool(sigma_up > 0) and s_noise:
            x = x + require_noise(noise_sampler, "res_multistep_ancestral")(sigmas[i], sigmas[i + 1]) \
                * s_noise * sigma_up
        old_denoised = uncond
        old_sigma_down = sigma_down
    return x


def sample_res_multistep(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, s_noise: float = 1.0,
) -> torch.Tensor:
    """RES second-order multistep, deterministic (eta 0)."""
    return res_multistep(model, x, sigmas, noise_sampler, callback, s_noise=s_noise, eta=0.0, cfg_pp=False)


def sample_res_multistep_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, s_noise: float = 1.0,
) -> torch.Tensor:
    """RES second-order multistep with CFG++, deterministic (eta 0)."""
    return res_multistep(model, x, sigmas, noise_sampler, callback, s_noise=s_noise, eta=0.0, cfg_pp=True)


def sample_res_multistep_ancestral(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """RES second-order multistep with ancestral noise of level ``eta``."""
    return res_multistep(model, x, sigmas, noise_sampler, callback, s_noise=s_noise, eta=eta, cfg_pp=False)


def sample_res_multistep_ancestral_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """RES second-order multistep with CFG++ and ancestral noise of level ``eta``."""
    return res_multistep(model, x, sigmas, noise_sampler, callback, s_noise=s_noise, eta=eta, cfg_pp=True)


@torch.no_grad()
def gradient_estimation(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    ge_gamma: float = 2.0, cfg_pp: bool = False,
) -> torch.Tensor:
    """Gradient estimation (Permenter & Yuan 2024, Algorithm 2): an Euler step, then from the second step
    on (gamma - 1) * (d - d_prev) * dt; the last step to sigma 0 jumps to x0. ``cfg_pp`` takes d from the
    unconditional x0 and lands the Euler step on the guided one."""
    last_uncond = None
    if cfg_pp:
        model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    old_d: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x, sigmas[i], last_uncond() if last_uncond is not None else denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def sample_gradient_estimation(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, ge_gamma: float = 2.0,
) -> torch.Tensor:
    """Gradient estimation with correction strength ``ge_gamma`` (2 in the paper)."""
    return gradient_estimation(model, x, sigmas, noise_sampler, callback, ge_gamma=ge_gamma, cfg_pp=False)


def sample_gradient_estimation_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, ge_gamma: float = 2.0,
) -> torch.Tensor:
    """Gradient estimation with CFG++."""
    return gradient_estimation(model, x, sigmas, noise_sampler, callback, ge_gamma=ge_gamma, cfg_pp=True)
