"""Latent formats: scale factor, channel count and the cheap latent->RGB preview factors per family."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["LatentFormat", "SD15", "SDXL", "SD3", "FLUX"]


@dataclass(frozen=True)
class LatentFormat:
    """How a family's VAE latents are scaled for the diffusion model and previewed as RGB."""

    name: str
    scale_factor: float
    latent_channels: int = 4
    latent_rgb_factors: tuple[tuple[float, float, float], ...] = ()
    latent_rgb_bias: tuple[float, float, float] | None = None
    shift_factor: float = 0.0

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent -> diffusion-model space: ``(z - shift) * scale``."""
        if self.shift_factor:
            return (latent - self.shift_factor) * self.scale_factor
        return latent * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        """Diffusion-model space -> raw VAE latent: ``z / scale + shift``."""
        if self.shift_factor:
            return latent / self.scale_factor + self.shift_factor
        return latent / self.scale_factor


# Preview factors: a least-squares linear map from SD's 4 latent channels to RGB (community-derived values
# used across SD tools).
SD15 = LatentFormat(
    name="SD15",
    scale_factor=0.18215,
    latent_rgb_factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
)

SDXL = LatentFormat(
    name="SDXL",
    scale_factor=0.13025,
    latent_rgb_factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    latent_rgb_bias=(0.1084, -0.0175, -0.0011),
)

# The 16-channel VAEs of the flow families (SD3.x and Flux.1 have different VAE weights and statistics).
# No latent->RGB factors yet: previews of these latents fall back to the preview's plain method.
SD3 = LatentFormat(name="SD3", scale_factor=1.5305, latent_channels=16, shift_factor=0.0609)
FLUX = LatentFormat(name="Flux", scale_factor=0.3611, latent_channels=16, shift_factor=0.1159)
