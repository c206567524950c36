"""InstructPix2Pix (Brooks et al. 2023, "InstructPix2Pix: Learning to Follow Image Editing Instructions").

An InstructPix2Pix UNet reads ``[noisy latent, image latent]``: twice the latent format's channels (8 for SD1.x).
The image latent rides on the conditioning as ``concat_latent_image`` (InstructPixToPixConditioning) and is passed
as it was encoded (raw VAE scale, no ``process_in``), as ComfyUI's ``SD15_instructpix2pix`` does; without one the
extra channels are zeros.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from engine.image_ops import common_upscale

__all__ = ["is_instruct_pix2pix", "ip2p_concat", "resize_to_batch_size"]


def is_instruct_pix2pix(in_channels: int, latent_channels: int) -> bool:
    """True for a UNet whose input is a noisy latent plus one image latent of the same width."""
    return in_channels == 2 * latent_channels


def resize_to_batch_size(t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """ComfyUI's ``resize_to_batch_size``: pick evenly spread items (not a tiling) to reach ``batch_size``."""
    n = t.shape[0]
    if n == batch_size:
        return t
    if batch_size <= 1:
        return t[:batch_size]
    if batch_size < n:
        scale = (n - 1) / (batch_size - 1)
        index = [min(round(i * scale), n - 1) for i in range(batch_size)]
    else:
        scale = n / batch_size
        index = [min(math.floor((i + 0.5) * scale), n - 1) for i in range(batch_size)]
    return t[torch.tensor(index, device=t.device)]


def ip2p_concat(options: Mapping[str, Any], noise: torch.Tensor) -> torch.Tensor:
    """The extra UNet input of one conditioning entry: its ``concat_latent_image`` at the noise's size and batch
    (bilinear, centre-cropped to the aspect first), or zeros."""
    image = options.get("concat_latent_image")
    if image is None:
        return torch.zeros_like(noise)
    image = image.to(device=noise.device, dtype=torch.float32)
    if image.shape[1:] != noise.shape[1:]:
        image = common_upscale(image, noise.shape[-1], noise.shape[-2], "bilinear", "center")
    return resize_to_batch_size(image, noise.shape[0])
