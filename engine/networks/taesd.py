# mypy: disable-error-code="no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""The Tiny AutoEncoder (TAESD, madebyollin/taesd): 64-channel conv stacks that map a diffusion model's latents to
RGB (and back) at a fraction of the VAE's cost, used for step previews. Layer indices follow the published
``taesd*_encoder`` / ``taesd*_decoder`` files (an ``nn.Sequential`` each), so their tensors load by name.

``TinyAutoencoder`` holds both stacks with ``vae_scale`` / ``vae_shift``: ``decode`` takes latents as
``(z - shift) * scale`` and returns RGB in [-1, 1]; ``encode`` the reverse. For previews of a diffusion model's
x0 (already in model space) scale 1 and shift 0 are right; for raw VAE latents, the family's scale and shift.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["conv", "Clamp", "Block", "Encoder", "Decoder", "TinyAutoencoder"]


def conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Conv2d:
    """A 3x3, padding-1 convolution."""
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3): ``3 tanh(x / 3)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: three 3x3 convolutions with ReLUs, plus a 1x1 skip when the widths differ.
    ``use_midblock_gn`` (TAEF2's variant) first adds a pooled branch ``x + pool(x)``: 1x1 conv to 4x width,
    GroupNorm(4), ReLU, 1x1 conv back."""

    def __init__(self, n_in: int, n_out: int, use_midblock_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip: nn.Module = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool: nn.Module | None = None
        if use_midblock_gn:
            wide = n_in * 4
            self.pool = nn.Sequential(nn.Conv2d(n_in, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(),
                                      nn.Conv2d(wide, n_in, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def Encoder(latent_channels: int = 4) -> nn.Sequential:  # noqa: N802 (the published / ComfyUI name)
    """RGB in [0, 1] -> latents: three stride-2 stages of 64 channels."""
    layers: list[nn.Module] = [conv(3, 64), Block(64, 64)]
    for _ in range(3):
        layers += [conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64)]
    return nn.Sequential(*layers, conv(64, latent_channels))


def Decoder(latent_channels: int = 4) -> nn.Sequential:  # noqa: N802 (the published / ComfyUI name)
    """Latents -> RGB in [0, 1] (roughly): soft clamp, then three 2x upsampling stages of 64 channels."""
    layers: list[nn.Module] = [Clamp(), conv(latent_channels, 64), nn.ReLU()]
    for _ in range(3):
        layers += [Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2),
                   conv(64, 64, bias=False)]
    return nn.Sequential(*layers, Block(64, 64), conv(64, 3))


class TinyAutoencoder(nn.Module):
    """Encoder and decoder stacks (keys ``taesd_encoder.*`` / ``taesd_decoder.*``) with ``vae_scale`` /
    ``vae_shift`` (module docstring)."""

    latent_magnitude = 3
    latent_shift = 0.5

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        self.taesd_encoder = Encoder(latent_channels)
        self.taesd_decoder = Decoder(latent_channels)
        self.vae_scale = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        self.vae_shift = nn.Parameter(torch.tensor(0.0), requires_grad=False)

    @staticmethod
    def scale_latents(x: torch.Tensor) -> torch.Tensor:
        """Raw latents -> [0, 1]."""
        return x.div(2 * TinyAutoencoder.latent_magnitude).add(TinyAutoencoder.latent_shift).clamp(0, 1)

    @staticmethod
    def unscale_latents(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> raw latents."""
        return x.sub(TinyAutoencoder.latent_shift).mul(2 * TinyAutoencoder.latent_magnitude)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents -> RGB in [-1, 1] ([B, 3, 8h, 8w])."""
        return self.taesd_decoder((x - self.vae_shift) * self.vae_scale).sub(0.5).mul(2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1] -> latents ([B, C, h/8, w/8])."""
        return self.taesd_encoder(x * 0.5 + 0.5) / self.vae_scale + self.vae_shift
