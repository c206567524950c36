"""Euler-family and classic k-diffusion samplers over the denoiser contract ``model(x, sigma) -> x0``.

Arithmetic follows k-diffusion (Crowson) as ComfyUI ships it, so results match it to float rounding.
Every sampler takes ``(model, x, sigmas, noise_sampler=None, callback=None)`` and returns the final x;
``callback(i, denoised, x)`` sees the step index, the x0 estimate and the current x.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.sampling.noise import NoiseSampler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE derivative dx/dsigma = (x - x0) / sigma (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step into a deterministic part down to ``sigma_down`` and fresh noise of size ``sigma_up``."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def require_noise(noise_sampler: NoiseSampler | None, name: str) -> NoiseSampler:
    """The noise source of a stochastic sampler, or a ValueError saying how to provide one."""
    if noise_sampler is None:
        raise ValueError(f"sampler {name!r} is stochastic: pass a noise_sampler (see engine.sampling.noise)")
    return noise_sampler


def batch_ones(x: torch.Tensor) -> torch.Tensor:
    """Ones of shape [B]: turns a scalar sigma into a per-item sigma."""
    return x.new_ones([x.shape[0]])


def denoise_and_report(
    model: Denoiser, x: torch.Tensor, sigma: torch.Tensor, s_in: torch.Tensor, step: int, callback: StepCallback | None,
) -> torch.Tensor:
    """The x0 estimate ``model(x, sigma)`` of step ``step``, first shown to ``callback`` (previews, progress)."""
    denoised = model(x, sigma * s_in)
    if callback is not None:
        callback(step, denoised, x)
    return denoised


@torch.no_grad()
def sample_euler(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 with s_churn = 0)."""
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x, sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler step to sigma_down plus fresh noise sigma_up (ancestral sampling, Ho et al. 2020 / k-diffusion).

    ``eta`` scales the ancestral noise level (0: plain Euler steps); ``s_noise`` scales the fresh noise."""
    noise = require_noise(noise_sampler, "euler_ancestral")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2, s_churn = 0); Euler on the last step."""
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver-2 style midpoint step in log-sigma (Karras et al. 2022 variant in k-diffusion)."""
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
) -> torch.Tensor:
    """Ancestral DPM-2: midpoint step to sigma_down, then fresh noise sigma_up."""
    noise = require_noise(noise_sampler, "dpm_2_ancestral")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def _lms_coeff(order: int, t: list[float], i: int, j: int) -> float:
    from scipy import integrate  # only LMS needs quadrature

    def basis(tau: float) -> float:
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return float(integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0])


@torch.no_grad()
def sample_lms(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, order: int = 4,
) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma) with Lagrange coefficients by quadrature (k-diffusion)."""
    s_in = batch_ones(x)
    t = [float(s) for s in sigmas.detach().cpu().numpy()]
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            cur = min(i + 1, order)
            coeffs = [_lms_coeff(cur, t, i, j) for j in range(cur)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=True))
    return x


@torch.no_grad()
def sample_lcm(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Latent Consistency Model multistep sampling (Luo et al. 2023): jump to x0, re-noise to the next sigma."""
    noise = require_noise(noise_sampler, "lcm")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        x = denoised
        if sigmas[i + 1] > 0:
            x = noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] + x
    return x


@torch.no_grad()
def sample_ddpm(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Ancestral DDPM posterior step (Ho et al. 2020, Algorithm 2) in variance-preserving space."""
    noise = require_noise(noise_sampler, "ddpm")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        denoised = denoise_and_report(model, x, sigma, s_in, i, callback)
        eps = (x - denoised) / sigma
        x_vp = x / torch.sqrt(1.0 + sigma**2.0)
        ac = 1 / ((sigma * sigma) + 1)
        ac_prev = 1 / ((sigma_prev * sigma_prev) + 1)
        alpha = ac / ac_prev
        mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - ac).sqrt())
        if sigma_prev > 0:
            mu = mu + ((1 - alpha) * (1.0 - ac_prev) / (1.0 - ac)).sqrt() * noise(sigma, sigma_prev)
            mu = mu * torch.sqrt(1.0 + sigma_prev**2.0)
        x = mu
    return x
