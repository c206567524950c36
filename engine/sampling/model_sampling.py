"""Discrete DDPM noise schedule as ComfyUI's ``ModelSamplingDiscrete`` sees it (SD1.x / SD2.x / SDXL).

The table follows the latent-diffusion "linear" (scaled-linear) beta schedule of Rombach et al. 2022:
float64 betas -> alphas_cumprod -> ``sigma = sqrt((1 - a) / a)``, stored as float32. Timesteps handed to
the UNet are the *nearest integer* table index for a sigma (docs/spec/sampling-parity.md rule 5).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Prediction = Literal["eps", "v"]

# The value ComfyUI pins the last alpha_bar to under zero-terminal-SNR, so sigma_max stays finite.
_ZERO_SNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def scaled_linear_betas(linear_start: float, linear_end: float, timesteps: int) -> torch.Tensor:
    """Betas of the latent-diffusion "linear" schedule: a float64 linspace in sqrt space, squared."""
    return torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2


def make_beta_schedule(schedule: str, timesteps: int, linear_start: float = 1e-4, linear_end: float = 2e-2,
                       cosine_s: float = 8e-3) -> torch.Tensor:
    """Float64 betas of a named DDPM schedule: ``linear`` (the scaled-linear one above), ``sqrt_linear`` (linear
    in beta: the original AnimateDiff motion modules), ``sqrt``, ``cosine`` (Nichol & Dhariwal 2021, eq. 17, betas
    clipped to 0.999) and ``squaredcos_cap_v2`` (the same alpha-bar discretised per step, capped at 0.999)."""
    if schedule == "linear":
        return scaled_linear_betas(linear_start, linear_end, timesteps)
    if schedule == "sqrt_linear":
        return torch.linspace(linear_start, linear_end, timesteps, dtype=torch.float64)
    if schedule == "sqrt":
        return torch.linspace(linear_start, linear_end, timesteps, dtype=torch.float64) ** 0.5
    if schedule == "cosine":
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + cosine_s
        alpha_bar = torch.cos(t / (1 + cosine_s) * math.pi / 2) ** 2
        alpha_bar = alpha_bar / alpha_bar[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, 0.999)
    if schedule == "squaredcos_cap_v2":
        def bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - bar((i + 1) / timesteps) / bar(i / timesteps), 0.999) for i in range(timesteps)],
                            dtype=torch.float64)
    raise ValueError(f"beta schedule {schedule!r} is unknown; use one of linear, sqrt_linear, sqrt, cosine, "
                     "squaredcos_cap_v2")


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has (almost) zero SNR (Lin et al. 2023, alg. 1)."""
    root_ab = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first = root_ab[0].clone()
    last = root_ab[-1].clone()
    root_ab = (root_ab - last) * (first / (first - last))
    alpha_bar = root_ab * root_ab
    alpha_bar[-1] = _ZERO_SNR_LAST_ALPHA_BAR
    return ((1.0 - alpha_bar) / alpha_bar) ** 0.5


def _as_column(sigma: torch.Tensor | float, ndim: int, like: torch.Tensor) -> torch.Tensor:
    """Sigma as a tensor broadcastable over a batch ``[B, ...]`` (scalar or per-item)."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        return s
    return s.reshape(s.shape[:1] + (1,) * (ndim - 1))


class DiscreteSchedule:
    """A discrete sigma table (``sigmas``, ``log_sigmas``, float32) and the timestep <-> sigma maps over it."""

    sigmas: torch.Tensor
    log_sigmas: torch.Tensor

    @property
    def sigma_min(self) -> torch.Tensor:
        """Smallest table sigma (t = 0), float32 scalar tensor."""
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        """Largest table sigma (t = timesteps - 1), float32 scalar tensor."""
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Nearest integer timestep (in log-sigma distance) for each sigma; same shape as ``sigma``."""
        s = torch.as_tensor(sigma)
        if not s.is_floating_point():
            s = s.float()
        log_sigma = s.log().to(self.log_sigmas.device)
        dists = log_sigma.reshape(1, -1) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(s.shape).to(s.device)

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        """Sigma for a (possibly fractional) timestep by linear interpolation of log-sigma."""
        ts = torch.as_tensor(timestep)
        t = ts.float().to(self.log_sigmas.device).clamp(0, len(self.sigmas) - 1)
        low = t.floor().long()
        high = t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(ts.device)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the schedule (0 = start, very large; 1 = end, 0.0)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)).item())


class EpsVPrediction:
    """The eps / v parameterisation (``prediction``) of a model over its schedule (mixed into a schedule class)."""

    sigma_data: float = 1.0
    prediction: Prediction = "eps"

    def calculate_input(self, sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """UNet input ``c_in * x = x / sqrt(sigma^2 + sigma_data^2)``."""
        s = _as_column(sigma, x.ndim, x)
        return x / (s**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(
        self, sigma: torch.Tensor | float, model_output: torch.Tensor, model_input: torch.Tensor
    ) -> torch.Tensor:
        """x0 estimate from the network output (eps: ``x - sigma*eps``; v: Salimans & Ho 2022)."""
        s = _as_column(sigma, model_output.ndim, model_output)
        if self.prediction == "eps":
            return model_input - model_output * s
        sd2 = self.sigma_data**2
        return model_input * sd2 / (s**2 + sd2) - model_output * s * self.sigma_data / (s**2 + sd2) ** 0.5

    def noise_scaling(
        self,
        sigma: torch.Tensor | float,
        noise: torch.Tensor,
        latent_image: torch.Tensor,
        max_denoise: bool = False,
    ) -> torch.Tensor:
        """Starting point ``latent + noise * (sqrt(1 + sigma^2) if max_denoise else sigma)`` (parity rule 4)."""
        s = _as_column(sigma, noise.ndim, noise)
        scale = torch.sqrt(1.0 + s**2.0) if max_denoise else s
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor | float, latent: torch.Tensor) -> torch.Tensor:
        """Map the sampler's final x back to a latent (identity for discrete eps / v models)."""
        return latent


class ModelSamplingDiscrete(DiscreteSchedule, EpsVPrediction):
    """Sigma table plus the eps / v parameterisation of a discrete-time diffusion model.

    Parameters:
        prediction: ``"eps"`` (SD1.x, SDXL) or ``"v"`` (SD2.x 768-v).
        linear_start, linear_end: first and last beta of the scaled-linear schedule.
        timesteps: number of discrete training timesteps (table length).
        zero_snr: rescale to zero terminal SNR (ComfyUI's ``zsnr`` option).
    """

    def __init__(
        self,
        prediction: Prediction = "eps",
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        timesteps: int = 1000,
        zero_snr: bool = False,
    ) -> None:
        if prediction not in ("eps", "v"):
            raise ValueError(f"ModelSamplingDiscrete: prediction must be 'eps' or 'v', got {prediction!r}")
        if timesteps < 2:
            raise ValueError(f"ModelSamplingDiscrete: timesteps must be >= 2, got {timesteps}")
        self.prediction = prediction
        self.linear_start = linear_start
        self.linear_end = linear_end
        self.num_timesteps = timesteps
        self.zero_snr = zero_snr
        betas = scaled_linear_betas(linear_start, linear_end, timesteps)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas64 = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        if zero_snr:
            sigmas64 = rescale_zero_terminal_snr(sigmas64)
        self.sigmas: torch.Tensor = sigmas64.float()
        self.log_sigmas: torch.Tensor = sigmas64.log().float()

    def __repr__(self) -> str:
        return (
            f"ModelSamplingDiscrete(prediction={self.prediction!r}, linear_start={self.linear_start}, "
            f"linear_end={self.linear_end}, timesteps={self.num_timesteps}, zero_snr={self.zero_snr})"
        )
