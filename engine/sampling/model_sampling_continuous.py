"""Continuous-time model sampling (ComfyUI's ModelSamplingContinuousEDM / ModelSamplingContinuousV patches).

The network is conditioned on a continuous noise level instead of a discrete timestep:

- EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"):
  t = log(sigma) / 4, with an eps, v or EDM (c_skip / c_out, sigma_data 0.5) output parameterisation;
- V (continuous v-prediction, e.g. CosXL / SDXL-edit style models): t = atan(sigma) * 2 / pi.

The sigma table (for schedulers) is 1000 points evenly spaced in log sigma from sigma_min to sigma_max.
Playground v2.5 (EDM, sigma_data 0.5) also normalises its SDXL-VAE latents per channel (``PLAYGROUND_V25``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from engine.latent_formats import LatentFormat
from engine.sampling.model_sampling import _as_column

ContinuousPrediction = Literal["eps", "v", "edm"]


class ModelSamplingContinuousEDM:
    """Continuous EDM noise levels with an eps / v / EDM output parameterisation.

    Parameters:
        prediction: ``"eps"``, ``"v"`` (v-prediction) or ``"edm"`` (F_theta of Karras et al., eq. 7).
        sigma_min, sigma_max: ends of the sigma table.
        sigma_data: the data standard deviation in the preconditioning (1.0; 0.5 for EDM models).
    """

    def __init__(self, prediction: ContinuousPrediction = "eps", sigma_min: float = 0.002,
                 sigma_max: float = 120.0, sigma_data: float = 1.0) -> None:
        if prediction not in ("eps", "v", "edm"):
            raise ValueError(f"ModelSamplingContinuousEDM: prediction must be eps, v or edm, got {prediction!r}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"ModelSamplingContinuousEDM: need 0 < sigma_min < sigma_max, got {sigma_min}, "
                             f"{sigma_max}")
        self.prediction = prediction
        self.sigma_data = float(sigma_data)
        self.sigmas: torch.Tensor = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.log_sigmas: torch.Tensor = self.sigmas.log()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(prediction={self.prediction!r}, sigma_min={float(self.sigma_min):g}, "
                f"sigma_max={float(self.sigma_max):g}, sigma_data={self.sigma_data})")

    @property
    def sigma_min(self) -> torch.Tensor:
        """Smallest table sigma."""
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        """Largest table sigma."""
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The network's noise input: log(sigma) / 4."""
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        """Inverse of ``timestep``."""
        return (torch.as_tensor(timestep) / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the schedule, log-linear between sigma_max (0) and sigma_min (1)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        log_min = math.log(float(self.sigma_min))
        return math.exp((math.log(float(self.sigma_max)) - log_min) * (1.0 - percent) + log_min)

    def calculate_input(self, sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """UNet input ``x / sqrt(sigma^2 + sigma_data^2)``."""
        s = _as_column(sigma, x.ndim, x)
        return x / (s**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor | float, model_output: torch.Tensor,
                           model_input: torch.Tensor) -> torch.Tensor:
        """x0 from the network output in the chosen parameterisation."""
        s = _as_column(sigma, model_output.ndim, model_output)
        if self.prediction == "eps":
            return model_input - model_output * s
        sd2 = self.sigma_data**2
        skip = model_input * sd2 / (s**2 + sd2)
        out = model_output * s * self.sigma_data / (s**2 + sd2) ** 0.5
        return skip + out if self.prediction == "edm" else skip - out

    def noise_scaling(self, sigma: torch.Tensor | float, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        """Starting point ``latent + noise * (sqrt(1 + sigma^2) if max_denoise else sigma)``."""
        s = _as_column(sigma, noise.ndim, noise)
        scale = torch.sqrt(1.0 + s**2.0) if max_denoise else s
        return noise * scale + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor | float, latent: torch.Tensor) -> torch.Tensor:
        """Identity (the sampler's final x is the latent)."""
        return latent


class ModelSamplingContinuousV(ModelSamplingContinuousEDM):
    """Continuous v-prediction with the network's noise input t = atan(sigma) * 2 / pi."""

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """atan(sigma) / pi * 2."""
        return torch.as_tensor(sigma).atan() / math.pi * 2

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        """tan(t * pi / 2)."""
        return (torch.as_tensor(timestep) * math.pi / 2).tan()


@dataclass(frozen=True)
class NormalizedLatentFormat(LatentFormat):
    """A latent format that standardises each channel: (latent - mean) * scale_factor / std."""

    latents_mean: tuple[float, ...] = ()
    latents_std: tuple[float, ...] = ()

    def _stats(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, len(self.latents_mean), 1, 1)
        mean = torch.tensor(self.latents_mean).view(shape).to(latent.device, latent.dtype)
        std = torch.tensor(self.latents_std).view(shape).to(latent.device, latent.dtype)
        return mean, std

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent -> diffusion-model space."""
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        """Diffusion-model space -> raw VAE latent."""
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


# Playground v2.5's published latent statistics (its diffusers VAE config) and preview factors.
PLAYGROUND_V25 = NormalizedLatentFormat(
    name="SDXL_Playground_2_5",
    scale_factor=0.5,
    latent_rgb_factors=((0.3920, 0.4054, 0.4549), (-0.2634, -0.0196, 0.0653), (0.0568, 0.1687, -0.0755),
                        (-0.3112, -0.2359, -0.2076)),
    latents_mean=(-1.6574, 1.886, -1.383, 2.5155),
    latents_std=(8.4927, 5.9022, 6.5498, 5.2299),
)
