"""DEIS: diffusion exponential integrator sampler (Zhang & Chen 2023, "Fast Sampling of Diffusion Models
with Exponential Integrator", arXiv:2204.13902), the time-based Adams-Bashforth form ("tAB-DEIS").

As in ComfyUI (after diff-sampler's port, Zhou et al. 2024): the sigmas are mapped to the time of a VP SDE
fitted to EDM's range (sigma 0.002 .. 80, eps 1e-3); the coefficient of each past derivative is the
integral over the step of the exponential-integrator weight times its Lagrange basis polynomial, by a
10,000-point sum in float32. Signature as in ``k_samplers``.
"""

from __future__ import annotations

import torch

from engine.sampling.k_samplers import Denoiser, StepCallback, batch_ones, denoise_and_report
from engine.sampling.noise import NoiseSampler

_EPS_S, _EDM_SIGMA_MIN, _EDM_SIGMA_MAX = 1e-3, 0.002, 80.0
_POINTS = 10000


def _vp_times(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t per sigma, beta_0, beta_1) of the VP SDE whose sigma range is EDM's (float32, CPU)."""
    log_min = torch.tensor(_EDM_SIGMA_MIN, dtype=torch.float32).pow(2).add(1).log()
    log_max = torch.tensor(_EDM_SIGMA_MAX, dtype=torch.float32).pow(2).add(1).log()
    beta_d = 2 * (log_min / _EPS_S - log_max) / (_EPS_S - 1)
    beta_min = log_max - 0.5 * beta_d
    s = sigmas.detach().cpu()
    t = ((beta_min**2 + 2 * beta_d * (s**2 + 1).log()).sqrt() - beta_min) / beta_d
    return t, beta_min, beta_d + beta_min


def _weight(beta_0: torch.Tensor, beta_1: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    """-1/2 d(log alpha)/dtau / sqrt(alpha (1 - alpha)) for alpha(tau) = exp(-tau^2 (b1 - b0) / 2 - tau b0)."""
    alpha = torch.exp(-0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0)
    d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
    return -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))


def deis_coefficients(sigmas: torch.Tensor, max_order: int) -> list[list[torch.Tensor]]:
    """Per step, the tAB-DEIS coefficients of the current and past derivatives (empty at order 1)."""
    t, beta_0, beta_1 = _vp_times(sigmas)
    coeffs: list[list[torch.Tensor]] = []
    for i in range(len(t) - 1):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        taus = torch.linspace(float(t[i]), float(t[i + 1]), _POINTS)
        dtau = (t[i + 1] - t[i]) / _POINTS
        prev = [t[i - k] for k in range(order)]
        weight = _weight(beta_0, beta_1, taus)
        row = []
        for j in range(order):
            basis = torch.ones_like(taus)
            for k in range(order):
                if k != j:
                    basis = basis * ((taus - prev[k]) / (prev[j] - prev[k]))
            row.append(torch.sum(weight * basis) * dtau)
        coeffs.append(row)
    return coeffs


@torch.no_grad()
def sample_deis(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, max_order: int = 3,
) -> torch.Tensor:
    """tAB-DEIS (Zhang & Chen 2023) of order ``max_order`` (1..4); Euler on the first and the last step."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"deis: max_order must be 1..4, got {max_order}")
    coeffs = deis_coefficients(sigmas, max_order)
    s_in = batch_ones(x)
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoise_and_report(model, x, t_cur, s_in, i, callback)
        d_cur = (x - denoised) / t_cur
        order = 1 if t_next <= 0 else min(max_order, i + 1)
        if order == 1:
            x_next = x + (t_next - t_cur) * d_cur
        else:
            row = coeffs[i]
            x_next = x + row[0].to(x.device) * d_cur
            for k in range(1, order):
                x_next = x_next + row[k].to(x.device) * history[-k]
        if len(history) == max_order - 1:
            if history:
                del history[0]
                history.append(d_cur)
        else:
            history.append(d_cur)
        x = x_next
    return x


__all__ = ["deis_coefficients", "sample_deis"]
