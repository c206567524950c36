"""Cheap latent -> RGB previews through a latent format's linear factor matrix (no VAE decode).

torch and PIL are imported inside the functions: the server's event sink imports the preview-method rule
from here on its torch-free start-up path.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.latent_formats import LatentFormat

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from engine.handles import ModelHandle

__all__ = ["PREVIEW_METHODS", "effective_preview_method", "latent_to_rgb", "latent_preview"]

PREVIEW_METHODS = frozenset({"none", "auto", "latent2rgb", "taesd"})


def latent_to_rgb(latent: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """[C,h,w] or [B,C,h,w] model-space latent -> [h,w,3] (first item) RGB in 0..1."""
    import torch

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


def effective_preview_method(server_default: str, extra_data: Mapping[str, Any]) -> str:
    """The one place the preview method is decided: ``extra_data.preview_method`` overrides the server's
    ``--preview-method`` unless it is missing, "default" or unknown (ComfyUI semantics)."""
    requested = extra_data.get("preview_method")
    if isinstance(requested, str) and requested in PREVIEW_METHODS:
        return requested
    return server_default


def latent_preview(source: LatentFormat | ModelHandle, latent: torch.Tensor,
                   method: str = "latent2rgb") -> Image.Image | None:
    """PIL preview of a model-space latent (a sampler callback's x0), one pixel per latent cell.

    ``source`` is a LatentFormat or a MODEL handle. Returns None for ``method`` "none" or a format without
    preview factors. Every other method uses the factor matrix. The event sink shrinks the image to the
    server's ``--preview-size`` when it encodes the frame, so it is not resized here.
    """
    import torch
    from PIL import Image

    fmt = source if isinstance(source, LatentFormat) else source.latent_format
    if method in ("none", "") or not fmt.latent_rgb_factors:
        return None
    rgb = latent_to_rgb(latent, fmt)
    return Image.fromarray((rgb * 255.0).round().to(torch.uint8).cpu().numpy(), mode="RGB")
