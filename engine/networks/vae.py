# mypy: disable-error-code="no-any-return,operator,union-attr"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""AutoencoderKL (LDM layout): Encoder, Decoder, quant_conv, post_quant_conv.

Attribute names match checkpoint keys under ``first_stage_model.`` (``encoder.down.N.block.M``,
``decoder.up.N.upsample``, ``mid.attn_1``...). The mid-block attention runs through SDPA.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.configs import VAEConfig as VAEConfig  # torch-free home; re-exported here
from engine.networks.ops import Plain


def _norm(ops: Any, ch: int, kw: dict[str, Any]) -> nn.Module:
    return ops.GroupNorm(32, ch, eps=1e-6, affine=True, **kw)


class ResnetBlock(nn.Module):
    """Two GroupNorm-SiLU-conv layers; ``nin_shortcut`` 1x1 conv exactly when channels differ."""

    def __init__(self, in_channels: int, out_channels: int, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        # ldm's attributes, read by code that walks the blocks (e.g. tiled VAE implementations)
        self.in_channels, self.out_channels, self.use_conv_shortcut = in_channels, out_channels, False
        self.norm1 = _norm(ops, in_channels, kw)
        self.conv1 = ops.Conv2d(in_channels, out_channels, 3, padding=1, **kw)
        self.norm2 = _norm(ops, out_channels, kw)
        self.conv2 = ops.Conv2d(out_channels, out_channels, 3, padding=1, **kw)
        if in_channels != out_channels:
            self.nin_shortcut = ops.Conv2d(in_channels, out_channels, 1, **kw)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, q/k/v/proj_out as 1x1 convs."""

    def __init__(self, ch: int, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        self.norm = _norm(ops, ch, kw)
        self.q = ops.Conv2d(ch, ch, 1, **kw)
        self.k = ops.Conv2d(ch, ch, 1, **kw)
        self.v = ops.Conv2d(ch, ch, 1, **kw)
        self.proj_out = ops.Conv2d(ch, ch, 1, **kw)

    def optimized_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Single-head attention over the pixels of [B, C, H, W] q / k / v (ComfyUI's name for this step)."""
        b, c, h, w = q.shape
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(2, 3).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        return x + self.proj_out(self.optimized_attention(self.q(n), self.k(n), self.v(n)))


class Downsample(nn.Module):
    """Asymmetric (right/bottom) zero pad then stride-2 3x3 conv."""

    def __init__(self, ch: int, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        self.conv = ops.Conv2d(ch, ch, 3, stride=2, padding=0, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, ch: int, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        self.conv = ops.Conv2d(ch, ch, 3, padding=1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch: int, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch, kw, ops)
        self.attn_1 = AttnBlock(ch, kw, ops)
        self.block_2 = ResnetBlock(ch, ch, kw, ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()


class Encoder(nn.Module):
    """Pixels [-1, 1] -> 2*z_channels moments."""

    def __init__(self, cfg: VAEConfig, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(cfg.ch_mult), cfg.num_res_blocks  # ldm's attributes
        self.conv_in = ops.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1, **kw)
        in_mult = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for level, mult in enumerate(cfg.ch_mult):
            stage = _Level()
            block_in = cfg.ch * in_mult[level]
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, cfg.ch * mult, kw, ops))
                block_in = cfg.ch * mult
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in, kw, ops)
            self.down.append(stage)
        self.mid = _Mid(block_in, kw, ops)
        self.norm_out = _norm(ops, block_in, kw)
        self.conv_out = ops.Conv2d(block_in, 2 * cfg.z_channels, 3, padding=1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """z_channels latent -> pixels (unclamped, about [-1, 1])."""

    def __init__(self, cfg: VAEConfig, kw: dict[str, Any], ops: Any) -> None:
        super().__init__()
        # ldm's attributes, read by code that walks the blocks (this decoder ends in norm_out + conv_out, no tanh)
        self.num_resolutions, self.num_res_blocks = len(cfg.ch_mult), cfg.num_res_blocks
        self.give_pre_end, self.tanh_out = False, False
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = ops.Conv2d(cfg.z_channels, block_in, 3, padding=1, **kw)
        self.mid = _Mid(block_in, kw, ops)
        levels: list[nn.Module] = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = _Level()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, kw, ops))
                block_in = block_out
            if level != 0:
                stage.upsample = Upsample(block_in, kw, ops)
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(ops, block_in, kw)
        self.conv_out = ops.Conv2d(block_in, cfg.out_ch, 3, padding=1, **kw)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """The SD VAE. encode(x) -> posterior mean (unscaled); decode(z) -> pixels in about [-1, 1].

    Parameters: config: VAEConfig; dtype/device: parameter placement; operations: layer factory.
    """

    def __init__(self, config: VAEConfig, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.config = config
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.encoder = Encoder(config, kw, operations)
        self.decoder = Decoder(config, kw, operations)
        if config.quant_conv:
            self.quant_conv = operations.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1, **kw)
            self.post_quant_conv = operations.Conv2d(config.embed_dim, config.z_channels, 1, **kw)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean (the distribution's mode) of pixels in [-1, 1]."""
        moments = self.encoder(x)
        if self.config.quant_conv:
            moments = self.quant_conv(moments)
        return moments[:, : self.config.embed_dim]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels in about [-1, 1] from a raw (unscaled) latent."""
        return self.decoder(self.post_quant_conv(z) if self.config.quant_conv else z)
