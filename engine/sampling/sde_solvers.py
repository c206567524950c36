"""Exponential-integrator SDE solvers in data prediction: ER-SDE and SEEDS.

- ``er_sde``: the VP ER-SDE-Solver-3 of Cui et al. 2023 ("Elucidating the Solution Space of Extended
  Reverse-Time SDE for Diffusion Models", arXiv:2309.06169), stages 1-3, the stage integrals by a
  200-point sum; its noise scale function picks the SDE (default: the paper's ER-SDE
  ``x (e^(x^0.3) + 10)``; ``x^(eta + 1)``: the reverse-time SDE; eta 0: the ODE).
- ``seeds_2`` / ``seeds_3``: SEEDS-2 / SEEDS-3 of Gonzalez et al. 2023 ("SEEDS: Exponential SDE Solvers
  for Fast High-Quality Sampling from Diffusion Models", arXiv:2305.14267), VP data prediction, with
  the noise of the sub-steps chained so each step's total noise has the exact variance.

Times are half-log-SNR ``lambda = -log(sigma)`` (discrete eps / v models, alpha = 1 up to rounding);
arithmetic follows ComfyUI's k-diffusion. Signature as in ``k_samplers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.sampling.dpm_solvers import lam_of, sig_of
from engine.sampling.k_samplers import Denoiser, StepCallback, batch_ones, denoise_and_report, require_noise
from engine.sampling.noise import NoiseSampler

NoiseScaler = Callable[[torch.Tensor], torch.Tensor]
_ER_POINTS = 200


def er_sde_noise_scaler(x: torch.Tensor) -> torch.Tensor:
    """ER-SDE's default noise scale function x (e^(x^0.3) + 10) (Cui et al. 2023, section 4)."""
    return x * ((x**0.3).exp() + 10.0)


@dataclass(frozen=True)
class PowerNoiseScaler:
    """The reverse-time SDE's noise scale function x^(eta + 1) (eta 0: the probability-flow ODE)."""

    eta: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x ** (eta + 1)."""
        return x ** (self.eta + 1)


@torch.no_grad()
def sample_er_sde(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, s_noise: float = 1.0,
    noise_scaler: NoiseScaler | None = None, max_stage: int = 3,
) -> torch.Tensor:
    """ER-SDE-Solver (Cui et al. 2023, Algorithm 1 with stages up to ``max_stage`` in 1..3) in
    er_lambda = sigma / alpha; the last step to sigma 0 jumps to x0; s_noise 0 drops the noise term."""
    if not 1 <= max_stage <= 3:
        raise ValueError(f"er_sde: max_stage must be 1..3, got {max_stage}")
    scale = er_sde_noise_scaler if noise_scaler is None else noise_scaler
    noise = require_noise(noise_sampler, "er_sde") if s_noise > 0 else None
    points = torch.arange(0, float(_ER_POINTS), dtype=torch.float32, device=x.device)
    er_lambdas = lam_of(sigmas).neg().exp()
    s_in = batch_ones(x)
    old_denoised: torch.Tensor | None = None
    old_denoised_d: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / lam_s, sigmas[i + 1] / lam_t
            r = scale(lam_t) / scale(lam_s)
            x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2 and old_denoised is not None:
                dt = lam_t - lam_s
                step = -dt / _ER_POINTS
                pos = lam_t + points * step
                scaled = scale(pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (lam_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * scale(lam_t)) * denoised_d
                if stage >= 3 and old_denoised_d is not None:
                    s_u = torch.sum((pos - lam_s) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((lam_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt**2) / 2 + s_u * scale(lam_t)) * denoised_u
                old_denoised_d = denoised_d
            if noise is not None:
                amount = (lam_t**2 - lam_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * amount
        old_denoised = denoised
    return x


def _h_phi_1(h: torch.Tensor) -> torch.Tensor:
    return torch.expm1(h)


def _h_phi_2(h: torch.Tensor) -> torch.Tensor:
    return (torch.expm1(h) - h) / h


def _chained(noise: torch.Tensor, factor: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Carry a sub-step's noise into the next sub-step with decay ``factor`` plus independent fresh noise."""
    return noise * factor.exp() + factor.mul(2).expm1().neg().sqrt() * fresh


@torch.no_grad()
def sample_seeds_2(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0, r: float = 0.5,
) -> torch.Tensor:
    """SEEDS-2 (Gonzalez et al. 2023, Algorithm 3 in data prediction): one intermediate evaluation at
    fraction ``r`` of the step in lambda; ``eta`` scales the SDE part (0: the DPM-Solver-2 ODE step)."""
    inject = eta > 0 and s_noise > 0
    noise = require_noise(noise_sampler, "seeds_2") if inject else None
    s_in = batch_ones(x)
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1 = torch.lerp(lam_s, lam_t, r)
        sigma_1 = sig_of(lam_1)
        alpha_1 = sigma_1 * lam_1.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()

        x_2 = sigma_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_1 * _h_phi_1(-r * h_eta) * denoised
        sde_noise = torch.zeros_like(x)
        if noise is not None:
            sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_1)
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in)

        blended = torch.lerp(denoised, denoised_2, fac)
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * _h_phi_1(-h_eta) * blended
        if noise is not None:
            sde_noise = _chained(sde_noise, (r - 1) * h * eta, noise(sigma_1, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


@torch.no_grad()
def sample_seeds_3(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0, r_1: float = 1.0 / 3, r_2: float = 2.0 / 3,
) -> torch.Tensor:
    """SEEDS-3 (Gonzalez et al. 2023, Algorithm 4 in data prediction): evaluations at fractions ``r_1``
    and ``r_2`` of the step in lambda; ``eta`` scales the SDE part."""
    inject = eta > 0 and s_noise > 0
    noise = require_noise(noise_sampler, "seeds_3") if inject else None
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1, lam_2 = torch.lerp(lam_s, lam_t, r_1), torch.lerp(lam_s, lam_t, r_2)
        sigma_1, sigma_2 = sig_of(lam_1), sig_of(lam_2)
        alpha_1, alpha_2 = sigma_1 * lam_1.exp(), sigma_2 * lam_2.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()

        x_2 = sigma_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_1 * _h_phi_1(-r_1 * h_eta) * denoised
        sde_noise = torch.zeros_like(x)
        if noise is not None:
            sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_1)
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in)

        a3_2 = r_2 / r_1 * _h_phi_2(-r_2 * h_eta)
        a3_1 = _h_phi_1(-r_2 * h_eta) - a3_2
        x_3 = sigma_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if noise is not None:
            sde_noise = _chained(sde_noise, (r_1 - r_2) * h * eta, noise(sigma_1, sigma_2))
            x_3 = x_3 + sde_noise * sigma_2 * s_noise
        denoised_3 = model(x_3, sigma_2 * s_in)

        b3 = _h_phi_2(-h_eta) / r_2
        b1 = _h_phi_1(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if noise is not None:
            sde_noise = _chained(sde_noise, (r_2 - 1) * h * eta, noise(sigma_2, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x
