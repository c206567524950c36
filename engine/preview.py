"""Cheap latent -> RGB previews through a latent format's linear factor matrix (no VAE decode)."""
from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from engine.latent_formats import LatentFormat

__all__ = ["latent_to_rgb", "latent_preview"]


def latent_to_rgb(latent: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """[C,h,w] or [B,C,h,w] model-space latent -> [h,w,3] (first item) RGB in 0..1."""
    if not fmt.latent_rgb_factors:
        raise ValueError(f"latent format {fmt.name} has no RGB preview factors")
    x = latent[0] if latent.ndim == 4 else latent
    if x.shape[0] != len(fmt.latent_rgb_factors):
        raise ValueError(f"latent has {x.shape[0]} channels; format {fmt.name} previews "
                         f"{len(fmt.latent_rgb_factors)}")
    factors = torch.tensor(fmt.latent_rgb_factors, dtype=torch.float32, device=x.device)
    rgb = x.float().permute(1, 2, 0) @ factors
    if fmt.latent_rgb_bias is not None:
        rgb = rgb + torch.tensor(fmt.latent_rgb_bias, dtype=torch.float32, device=x.device)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def latent_preview(source: Any, latent: torch.Tensor, method: str = "latent2rgb",
                   max_size: int = 512) -> Image.Image | None:
    """PIL preview of a model-space latent (a sampler callback's x0), at most ``max_size`` pixels.

    ``source`` is a LatentFormat or anything with ``.latent_format`` (a MODEL handle). Returns None for
    ``method`` "none" or a format without preview factors. Every other method uses the factor matrix.
    """
    fmt = source if isinstance(source, LatentFormat) else getattr(source, "latent_format", None)
    if method == "none" or fmt is None or not fmt.latent_rgb_factors:
        return None
    rgb = latent_to_rgb(latent, fmt)
    img = Image.fromarray((rgb * 255.0).round().to(torch.uint8).cpu().numpy(), mode="RGB")
    if max(img.size) > max_size:
        scale = max_size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    return img
