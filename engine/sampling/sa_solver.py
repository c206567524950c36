"""SA-Solver: stochastic Adams predictor-corrector (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver
for Fast Sampling of Diffusion Models", NeurIPS 2023, arXiv:2309.05019), in data prediction.

Each step predicts x at the next sigma from the last ``predictor_order`` x0 estimates (eq. 15), and
corrects the current x with up to ``corrector_order`` of them including the new one (eq. 18); PECE
re-evaluates the model on the corrected x. The Adams coefficients integrate each Lagrange basis
polynomial in lambda = -log(sigma) against exp((1 + tau^2) lambda) exactly (integration by parts), or use
the paper's simple order-2 formulas (Appendix D). ``tau`` (the SDE strength) is chosen per sigma by
``tau_func``; ComfyUI's default is 1 between 20 % and 80 % of the model's schedule, else 0 (ODE).
Arithmetic follows ComfyUI's k-diffusion. Signature as in ``k_samplers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine.sampling.k_samplers import Denoiser, StepCallback, batch_ones, denoise_and_report, require_noise
from engine.sampling.noise import NoiseSampler

TauFunc = Callable[[torch.Tensor], float]


@dataclass(frozen=True)
class TauInterval:
    """tau(sigma) = eta inside [end_sigma, start_sigma], else 0; eta <= 0 is the ODE everywhere."""

    start_sigma: float
    end_sigma: float
    eta: float = 1.0

    def __call__(self, sigma: torch.Tensor | float) -> float:
        """The SDE strength at ``sigma``."""
        if self.eta <= 0:
            return 0.0
        s = float(sigma)
        return self.eta if self.start_sigma >= s >= self.end_sigma else 0.0


def default_tau(model: Any) -> TauInterval:
    """ComfyUI's default SDE window (20 % .. 80 % of the schedule) from the denoiser's ``model_sampling``."""
    ms = getattr(model, "model_sampling", None)
    if ms is None or not hasattr(ms, "percent_to_sigma"):
        raise ValueError("sa_solver: pass tau_func (e.g. TauInterval(start_sigma, end_sigma)); the denoiser "
                         f"{type(model).__name__} has no model_sampling to place the default SDE window")
    return TauInterval(float(ms.percent_to_sigma(0.2)), float(ms.percent_to_sigma(0.8)), 1.0)


def exponential_coefficients(s: torch.Tensor, t: torch.Tensor, order: int, tau: float) -> torch.Tensor:
    """(1 + tau^2) * integral_s^t exp((1 + tau^2) u) u^p du / exp((1 + tau^2) t), for p = 0 .. order - 1."""
    tau_mul = 1 + tau**2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    ends = t**p - s**p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_fact = (p + 1).lgamma()
    log_coeff = log_fact.unsqueeze(1) - log_fact.unsqueeze(0)
    if tau > 0:
        log_coeff = log_coeff - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (log_coeff.exp() * signs).tril() @ ends


def adams_coefficients(sigma_next: torch.Tensor, lambdas: torch.Tensor, lambda_s: torch.Tensor,
                       lambda_t: torch.Tensor, tau: float, simple_order_2: bool = False,
                       corrector: bool = False) -> torch.Tensor:
    """The b_i weights of the x0 estimates at ``lambdas`` for a step lambda_s -> lambda_t (eqs. 15 / 18)."""
    n = lambdas.shape[0]
    alpha_t = sigma_next * lambda_t.exp()
    tau_mul = 1 + tau**2
    h = lambda_t - lambda_s
    if simple_order_2 and n == 2:
        if corrector:
            b_1 = alpha_t * (0.5 * tau_mul * h)
            b_2 = alpha_t * (-h * tau_mul).expm1().neg() - b_1
        else:
            b_2 = alpha_t * (0.5 * tau_mul * h**2) / (lambdas[-2] - lambda_s)
            b_1 = alpha_t * (-h * tau_mul).expm1().neg() - b_2
        return torch.stack([b_2, b_1])
    integrals = exponential_coefficients(lambda_s, lambda_t, n, tau)
    vandermonde_t = torch.vander(lambdas, n, increasing=True).T
    b: torch.Tensor = alpha_t * torch.linalg.solve(vandermonde_t, integrals)
    return b


def _combine(preds: list[torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = torch.tensordot(torch.stack(preds, dim=1), b, dims=([1], [0]))
    return out


@torch.no_grad()
def sample_sa_solver(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    tau_func: TauFunc | None = None, s_noise: float = 1.0, predictor_order: int = 3, corrector_order: int = 4,
    use_pece: bool = False, simple_order_2: bool = False,
) -> torch.Tensor:
    """SA-Solver (Xue et al. 2023, Algorithm 1): Adams predictor of ``predictor_order`` (1..6), corrector of
    ``corrector_order`` (0..6), PECE on ``use_pece``; orders drop near the end of a schedule ending at 0."""
    if len(sigmas) <= 1:
        return x
    if predictor_order < 1 or corrector_order < 0:
        raise ValueError(f"sa_solver: predictor_order must be >= 1 and corrector_order >= 0, got "
                         f"{predictor_order} and {corrector_order}")
    tau_of = default_tau(model) if tau_func is None else tau_func
    lambdas = sigmas.log().neg()
    s_in = batch_ones(x)
    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h = torch.zeros_like(sigmas[0])
    tau_t = 0.0
    step_noise: torch.Tensor | None = None
    preds: list[torch.Tensor] = []
    lower_to_end = float(sigmas[-1]) == 0.0
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x_pred, sigmas[i], s_in, i, callback)
        preds.append(denoised)
        preds = preds[-max_order:]
        p_order = min(predictor_order, len(preds))
        c_order = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(preds))
        if lower_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)

        if c_order == 0:
            x = x_pred
        else:
            b = adams_coefficients(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau_t,
                                   simple_order_2, corrector=True)
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t**2) * h).exp() * x + _combine(preds[-c_order:], b)
            if step_noise is not None:
                x = x + step_noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in)
                preds[-1] = denoised

        if sigmas[i + 1] == 0:
            x = denoised
            continue
        tau_t = tau_of(sigmas[i + 1])
        b = adams_coefficients(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau_t,
                               simple_order_2, corrector=False)
        h = lambdas[i + 1] - lambdas[i]
        x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t**2) * h).exp() * x + _combine(preds[-p_order:], b)
        step_noise = None
        if tau_t > 0 and s_noise > 0:
            step_noise = require_noise(noise_sampler, "sa_solver")(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                * (-2 * tau_t**2 * h).expm1().neg().sqrt() * s_noise
            x_pred = x_pred + step_noise
    return x


@torch.no_grad()
def sample_sa_solver_pece(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    tau_func: TauFunc | None = None, s_noise: float = 1.0, predictor_order: int = 3, corrector_order: int = 4,
    simple_order_2: bool = False,
) -> torch.Tensor:
    """SA-Solver in PECE mode (predict, evaluate, correct, evaluate)."""
    return sample_sa_solver(model, x, sigmas, noise_sampler, callback, tau_func=tau_func, s_noise=s_noise,
                            predictor_order=predictor_order, corrector_order=corrector_order, use_pece=True,
                            simple_order_2=simple_order_2)
