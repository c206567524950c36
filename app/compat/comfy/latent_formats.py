"""ComfyUI's `comfy.latent_formats` for packs: latent format classes built from Loom's `engine.latent_formats`.

ComfyUI's formats are classes instantiated without arguments (`comfy.latent_formats.SDXL()`), with
`scale_factor`, `latent_channels`, `latent_rgb_factors`, `latent_rgb_factors_bias`, `process_in` /
`process_out`. Loom knows the SD15, SDXL, SD3 and Flux formats; other families' formats are absent.
"""
from __future__ import annotations

from typing import Any

import torch

from engine import latent_formats as _engine

__all__ = ["LatentFormat", "SD15", "SDXL", "SD3", "Flux"]


class LatentFormat:
    """ComfyUI's base class: identity scaling, 4 channels, no preview factors."""

    scale_factor: float = 1.0
    latent_channels: int = 4
    latent_dimensions: int = 2
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_factors_bias: list[float] | None = None
    taesd_decoder_name: str | None = None

    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent -> diffusion-model space."""
        return latent * self.scale_factor

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        """Diffusion-model space -> raw VAE latent."""
        return latent / self.scale_factor


def _from_engine(fmt: _engine.LatentFormat) -> type[LatentFormat]:
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"Loom's {fmt.name} latent format (engine.latent_formats.{fmt.name}).",
        "scale_factor": fmt.scale_factor,
        "latent_channels": fmt.latent_channels,
        "latent_rgb_factors": [list(row) for row in fmt.latent_rgb_factors] or None,
        "latent_rgb_factors_bias": list(fmt.latent_rgb_bias) if fmt.latent_rgb_bias else None,
        "taesd_decoder_name": f"{fmt.taesd}_decoder" if fmt.taesd else None,
        "shift_factor": fmt.shift_factor,
        "process_in": lambda self, latent: fmt.process_in(latent),
        "process_out": lambda self, latent: fmt.process_out(latent),
    }
    return type(fmt.name, (LatentFormat,), attrs)


SD15 = _from_engine(_engine.SD15)
SDXL = _from_engine(_engine.SDXL)
SD3 = _from_engine(_engine.SD3)
Flux = _from_engine(_engine.FLUX)
