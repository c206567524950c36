"""ComfyUI's `comfy.taesd.taesd` for packs: the Tiny AutoEncoder's building blocks (`conv`, `Clamp`, `Block`) and
its SD-style `Encoder` / `Decoder` stacks (madebyollin/taesd's architecture), which packs use to build tiny VAE
decoders from a checkpoint's layout. Loom's own previews do not use them (they use latent2rgb), and ComfyUI's
`TAESD` wrapper class is not provided."""
from __future__ import annotations

from typing import Any

import torch
from comfy.ops import disable_weight_init
from torch import nn

__all__ = ["Block", "Clamp", "Decoder", "Encoder", "conv"]


def conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Module:
    """A 3x3, padding-1 convolution (ComfyUI's uninitialised layer)."""
    return disable_weight_init.Conv2d(n_in, n_out, 3, padding=1, **kwargs)  # type: ignore[no-any-return]


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
        self.skip: nn.Module = (disable_weight_init.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out
                                else nn.Identity())
        self.fuse = nn.ReLU()
        self.pool: nn.Module | None = None
        if use_midblock_gn:
            wide = n_in * 4
            self.pool = nn.Sequential(nn.Conv2d(n_in, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(),
                                      nn.Conv2d(wide, n_in, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))  # type: ignore[no-any-return]


def Encoder(latent_channels: int = 4) -> nn.Sequential:  # noqa: N802 (ComfyUI's name)
    """TAESD's encoder: RGB [-1..1 mapped by the caller] -> latents, three stride-2 stages of 64 channels."""
    layers: list[nn.Module] = [conv(3, 64), Block(64, 64)]
    for _ in range(3):
        layers += [conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64)]
    return nn.Sequential(*layers, conv(64, latent_channels))


def Decoder(latent_channels: int = 4) -> nn.Sequential:  # noqa: N802 (ComfyUI's name)
    """TAESD's decoder: clamped latents -> RGB, three 2x upsampling stages of 64 channels."""
    layers: list[nn.Module] = [Clamp(), conv(latent_channels, 64), nn.ReLU()]
    for _ in range(3):
        layers += [Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2),
                   conv(64, 64, bias=False)]
    return nn.Sequential(*layers, Block(64, 64), conv(64, 3))
