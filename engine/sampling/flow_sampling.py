"""Flow-matching noise schedules (SD3.x, Flux.1) as ComfyUI's ``ModelSamplingDiscreteFlow`` /
``ModelSamplingFlux`` with the CONST (rectified-flow) parameterisation.

The noisy sample is ``x_sigma = sigma * noise + (1 - sigma) * x0`` with sigma in [0, 1]; the network predicts the
velocity ``v`` and ``x0 = x - sigma * v``. The table has ``timesteps`` sigmas of ``t = i / timesteps``
(i = 1..timesteps) through the family's time shift; samplers and schedulers use it as they use the discrete
table (``sigmas``, ``sigma_min``, ``sigma_max``, ``timestep``, ``sigma``, ``percent_to_sigma``).
"""
from __future__ import annotations

import math

import torch

from engine.sampling.model_sampling import _as_column

__all__ = ["ModelSamplingDiscreteFlow", "ModelSamplingFlux", "flux_resolution_shift", "time_snr_shift",
           "flux_time_shift"]


def time_snr_shift(shift: float, t: torch.Tensor | float) -> torch.Tensor | float:
    """SD3's shift: ``shift * t / (1 + (shift - 1) * t)`` (the identity at shift 1)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flux_time_shift(mu: float, t: torch.Tensor | float) -> torch.Tensor | float:
    """Flux's exponential shift: ``e^mu / (e^mu + (1 / t - 1))``."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))


def flux_resolution_shift(width: int, height: int, max_shift: float = 1.15, base_shift: float = 0.5) -> float:
    """ModelSamplingFlux's mu: linear in the number of 16x16 pixel patches, base at 256 and max at 4096."""
    m = (max_shift - base_shift) / (4096 - 256)
    b = base_shift - 256 * m
    return (width * height / (8 * 8 * 2 * 2)) * m + b


class _FlowBase:
    """The CONST parameterisation shared by both flow schedules."""

    sigmas: torch.Tensor
    prediction = "flow"

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def _sigma(self, t: torch.Tensor | float) -> torch.Tensor | float:
        raise NotImplementedError

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the schedule (0 -> 1.0, 1 -> 0.0)."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self._sigma(1.0 - percent))

    def calculate_input(self, sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """The network sees x as it is (no c_in scaling)."""
        return x

    def calculate_denoised(self, sigma: torch.Tensor | float, model_output: torch.Tensor,
                           model_input: torch.Tensor) -> torch.Tensor:
        """``x0 = x - sigma * v``."""
        return model_input - model_output * _as_column(sigma, model_output.ndim, model_output)

    def noise_scaling(self, sigma: torch.Tensor | float, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """``sigma * noise + (1 - sigma) * latent`` (max_denoise changes nothing for flow models)."""
        s = _as_column(sigma, noise.ndim, noise)
        return s * noise + (1.0 - s) * latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor | float, latent: torch.Tensor) -> torch.Tensor:
        """``latent / (1 - sigma)`` (the identity at the final sigma 0)."""
        return latent / (1.0 - _as_column(sigma, latent.ndim, latent))


class ModelSamplingDiscreteFlow(_FlowBase):
    """SD3.x / Flux-schnell schedule: sigma(t) = time_snr_shift(shift, t / multiplier); the network's timestep
    is ``sigma * multiplier`` (1000 for SD3, 1 for Flux-schnell, whose network scales by 1000 itself)."""

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, timesteps: int = 1000) -> None:
        self.shift = float(shift)
        self.multiplier = float(multiplier)
        ts = (torch.arange(1, timesteps + 1, 1) / timesteps) * self.multiplier
        self.sigmas = self.sigma(ts)

    def __repr__(self) -> str:
        return f"ModelSamplingDiscreteFlow(shift={self.shift}, multiplier={self.multiplier})"

    def _sigma(self, t: torch.Tensor | float) -> torch.Tensor | float:
        return time_snr_shift(self.shift, t)

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(sigma) * self.multiplier

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(time_snr_shift(self.shift, torch.as_tensor(timestep) / self.multiplier))


class ModelSamplingFlux(_FlowBase):
    """Flux-dev schedule: sigma(t) = e^shift / (e^shift + 1/t - 1) on a 10000-step table; timestep = sigma."""

    def __init__(self, shift: float = 1.15, timesteps: int = 10000) -> None:
        self.shift = float(shift)
        ts = torch.arange(1, timesteps + 1, 1) / timesteps
        self.sigmas = self.sigma(ts)

    def __repr__(self) -> str:
        return f"ModelSamplingFlux(shift={self.shift})"

    def _sigma(self, t: torch.Tensor | float) -> torch.Tensor | float:
        return flux_time_shift(self.shift, t)

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(sigma)

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(flux_time_shift(self.shift, torch.as_tensor(timestep)))
