"""DPM-Solver family (Lu et al. 2022a "DPM-Solver", 2022b "DPM-Solver++") for eps / v discrete models.

Times are half-log-SNR ``lambda = -log(sigma)``; arithmetic follows k-diffusion as ComfyUI ships it.
Signature as in ``k_samplers``: ``(model, x, sigmas, noise_sampler=None, callback=None, **knobs)``.
"""

from __future__ import annotations

import math

import torch

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


def lam_of(sigma: torch.Tensor) -> torch.Tensor:
    """Half-log-SNR time of a noise level: lambda = -log(sigma)."""
    return sigma.log().neg()


def sig_of(lam: torch.Tensor) -> torch.Tensor:
    """The noise level at half-log-SNR time ``lam`` (inverse of ``lam_of``)."""
    return lam.neg().exp()


@torch.no_grad()
def sample_dpmpp_2m(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in data prediction (Lu et al. 2022b, Algorithm 2)."""
    s_in = batch_ones(x)
    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        t, t_next = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sig_of(t_next) / sig_of(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - lam_of(sigmas[i - 1])) / h
            blended = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sig_of(t_next) / sig_of(t)) * x - (-h).expm1() * blended
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2S) single-step midpoint to sigma_down, then ancestral noise (Lu et al. 2022b)."""
    noise = require_noise(noise_sampler, "dpmpp_2s_ancestral")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = lam_of(sigmas[i]), lam_of(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (sig_of(s) / sig_of(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, sig_of(s) * s_in)
            x = (sig_of(t_next) / sig_of(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    eta: float = 1.0, r: float = 0.5, s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++ stochastic second-order single-step (Lu et al. 2022b, SDE variant in k-diffusion)."""
    if len(sigmas) <= 1:
        return x
    noise = require_noise(noise_sampler, "dpmpp_sde")
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
        h = lam_t - lam_s
        lam_s1 = lam_s + r * h
        fac = 1 / (2 * r)
        sigma_s1 = sig_of(lam_s1)
        alpha_s = sigmas[i] * lam_s.exp()
        alpha_s1 = sigma_s1 * lam_s1.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()
        sd, su = ancestral_step(lam_s.neg().exp(), lam_s1.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        x_2 = (alpha_s1 / alpha_s) * (-h_).exp() * x - alpha_s1 * (-h_).expm1() * denoised
        if eta > 0:
            x_2 = x_2 + alpha_s1 * noise(sigmas[i], sigma_s1) * s_noise * su
        denoised_2 = model(x_2, sigma_s1 * s_in)
        sd, su = ancestral_step(lam_s.neg().exp(), lam_t.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        blended = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * blended
        if eta > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    eta: float = 1.0, solver_type: str = "midpoint", s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022b, stochastic multistep; midpoint or Heun correction)."""
    if len(sigmas) <= 1:
        return x
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"dpmpp_2m_sde: solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    noise = require_noise(noise_sampler, "dpmpp_2m_sde")
    s_in = batch_ones(x)
    old_denoised: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lam_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                if solver_type == "heun":
                    coef = alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1)
                    x = x + coef * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0:
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with Brownian noise (Lu et al. 2022b)."""
    if len(sigmas) <= 1:
        return x
    noise = require_noise(noise_sampler, "dpmpp_3m_sde")
    s_in = batch_ones(x)
    den_1: torch.Tensor | None = None
    den_2: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = lam_of(sigmas[i]), lam_of(sigmas[i + 1])
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lam_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if h_2 is not None and h_1 is not None and den_1 is not None and den_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - den_1) / r0
                d1_1 = (den_1 - den_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif h_1 is not None and den_1 is not None:
                r = h_1 / h
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + (alpha_t * phi_2) * ((denoised - den_1) / r)
            if eta > 0:
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        den_1, den_2 = denoised, den_1
        h_1, h_2 = h, h_1
    return x


class _DPMSolverSteps:
    """Single-step DPM-Solver-1/2/3 updates in noise prediction (Lu et al. 2022a, Algorithms 4-5)."""

    def __init__(self, model: Denoiser) -> None:
        self.model = model

    def eps(self, cache: dict[str, torch.Tensor], key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            sigma = sig_of(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma)) / sig_of(t)
        return cache[key]

    def step1(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        h = t_next - t
        return x - sig_of(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step2(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, cache: dict[str, torch.Tensor], r1: float = 0.5) -> torch.Tensor:
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - sig_of(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return x - sig_of(t_next) * h.expm1() * eps - sig_of(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)

    def step3(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        r1, r2 = 1 / 3, 2 / 3
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        s2 = t + r2 * h
        u1 = x - sig_of(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = x - sig_of(s2) * (r2 * h).expm1() * eps - sig_of(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return x - sig_of(t_next) * h.expm1() * eps - sig_of(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)


@torch.no_grad()
def sample_dpm_fast(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver-fast (Lu et al. 2022a, sec. 3.4): orders 3,3,...,(2,1) on a uniform lambda grid.

    Uses only the schedule's end points and its length as the model-evaluation budget (ComfyUI behaviour).
    """
    if len(sigmas) <= 1:
        return x
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    nfe = len(sigmas) - 1
    if sigma_min <= 0 or sigmas[0] <= 0:
        raise ValueError("dpm_fast: the schedule needs positive first and last-nonzero sigmas")
    solver = _DPMSolverSteps(model)
    t_start = lam_of(torch.tensor(float(sigmas[0])))
    t_end = lam_of(torch.tensor(float(sigma_min)))
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(float(t_start), float(t_end), m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache: dict[str, torch.Tensor] = {}
        t, t_next = ts[i], ts[i + 1]
        eps = solver.eps(cache, "eps", x, t)
        if callback is not None:
            callback(i, x - sig_of(t) * eps, x)
        if order == 1:
            x = solver.step1(x, t, t_next, cache)
        elif order == 2:
            x = solver.step2(x, t, t_next, cache)
        else:
            x = solver.step3(x, t, t_next, cache)
    return x


class _PIDStepController:
    """PID step-size control for the adaptive solver (Lu et al. 2022a, sec. 4 / k-diffusion)."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float,
                 accept_safety: float = 0.81, eps: float = 1e-8) -> None:
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose(self, error: torch.Tensor) -> bool:
        inv = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv, inv, inv]
        self.errs[0] = inv
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
    pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81,
    eta: float = 0.0, s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver-23 with embedded error estimate and adaptive steps (Lu et al. 2022a, Algorithm 6).

    Only the schedule's end points are used; the number of model calls depends on the tolerances.
    ``pcoeff`` / ``icoeff`` / ``dcoeff`` / ``accept_safety`` tune the PID step controller; ``eta`` > 0
    makes each accepted step ancestral (solve down to sigma_down, add ``s_noise``-scaled fresh noise).
    """
    if len(sigmas) <= 1:
        return x
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive: order must be 2 or 3, got {order}")
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    solver = _DPMSolverSteps(model)
    t_end = lam_of(torch.tensor(float(sigma_min)))
    s = lam_of(torch.tensor(float(sigmas[0])))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    noise = require_noise(noise_sampler, "dpm_adaptive") if eta else None
    pid = _PIDStepController(abs(h_init), pcoeff, icoeff, dcoeff, order, accept_safety)
    x_prev = x
    step = 0
    while s < t_end - 1e-5:
        cache: dict[str, torch.Tensor] = {}
        t = torch.minimum(t_end, s + pid.h)
        t_solve, sigma_up = t, None
        if noise is not None:
            sigma_down, _ = ancestral_step(sig_of(s), sig_of(t), eta)
            t_solve = torch.minimum(t_end, lam_of(sigma_down))
            sigma_up = (sig_of(t) ** 2 - sig_of(t_solve) ** 2) ** 0.5
        eps = solver.eps(cache, "eps", x, s)
        if order == 2:
            x_low = solver.step1(x, s, t_solve, cache)
            x_high = solver.step2(x, s, t_solve, cache)
        else:
            x_low = solver.step2(x, s, t_solve, cache, r1=1 / 3)
            x_high = solver.step3(x, s, t_solve, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if pid.propose(error):
            if callback is not None:
                callback(step, x - sig_of(s) * eps, x)
            x_prev = x_low
            x = x_high
            if noise is not None and sigma_up is not None:
                x = x + sigma_up * s_noise * noise(sig_of(s), sig_of(t))
            s = t
            step += 1
    return x
