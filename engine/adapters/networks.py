# mypy: disable-error-code="attr-defined,no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""Control networks: the ControlNet (lllyasviel's cldm layout) and the T2I-Adapters (full and light).

Attribute names follow the cldm / TencentARC keys (``input_blocks``, ``zero_convs``, ``input_hint_block``,
``middle_block_out``; ``conv_in``, ``body.N.block1``), so a state dict in those layouts loads as is.
Each ``forward`` returns ComfyUI's control dict: lists under ``input`` / ``middle`` / ``output`` that the
UNet consumes from the end (``engine.networks.unet``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.adapters.detect import ControlNetConfig, T2IConfig
from engine.networks.ops import Plain
from engine.networks.unet import TimestepEmbedSequential, build_encoder, timestep_embedding

__all__ = ["ControlNet", "T2IAdapter", "T2IAdapterLight", "build_t2i"]

# cldm's hint block down-samples (stride 2) at these conv indices of input_hint_block (convs at 0, 2, ..., 14)
_HINT_STRIDED = (4, 8, 12)


class ControlNet(nn.Module):
    """cldm ControlNet. forward(x, hint, timesteps, context, y=None) -> {"middle": [1], "output": [12]}.

    Parameters: config: ControlNetConfig; dtype/device: where parameters are created;
    operations: layer factory (engine.networks.ops).
    """

    time_embed: nn.Sequential
    label_emb: nn.Module
    input_blocks: nn.ModuleList
    middle_block: TimestepEmbedSequential

    def __init__(self, config: ControlNetConfig, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.config = config
        c = config.unet
        skip_chans = build_encoder(self, c, dtype, device, operations)
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.zero_convs = nn.ModuleList(
            TimestepEmbedSequential(operations.Conv2d(ch, ch, 1, **kw)) for ch in skip_chans)
        layers: list[nn.Module] = []
        widths = (config.hint_channels, *config.hint_widths, c.model_channels)
        for i in range(len(widths) - 1):
            if layers:
                layers.append(nn.SiLU())
            stride = 2 if 2 * i in _HINT_STRIDED else 1
            layers.append(operations.Conv2d(widths[i], widths[i + 1], 3, padding=1, stride=stride, **kw))
        self.input_hint_block = TimestepEmbedSequential(*layers)
        self.middle_block_out = TimestepEmbedSequential(operations.Conv2d(skip_chans[-1], skip_chans[-1], 1, **kw))

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor,
                context: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict[str, list[torch.Tensor]]:
        c = self.config.unet
        emb = self.time_embed(timestep_embedding(timesteps, c.model_channels).to(x.dtype))
        guided: torch.Tensor | None = self.input_hint_block(hint, emb, context)
        if c.num_classes is not None:
            if y is None:
                raise ValueError("ControlNet: this ControlNet is ADM-conditioned (SDXL); pass y")
            emb = emb + self.label_emb(y.to(x.dtype))
        outputs: list[torch.Tensor] = []
        h = x
        for block, zero in zip(self.input_blocks, self.zero_convs, strict=True):
            h = block(h, emb, context)
            if guided is not None:
                h = h + guided
                guided = None
            outputs.append(zero(h, emb, context))
        h = self.middle_block(h, emb, context)
        return {"middle": [self.middle_block_out(h, emb, context)], "output": outputs}


# ------------------------------------------------------------------------------------------ T2I-Adapter
class _Down(nn.Module):
    """Stride-2 down-sampling: a 3x3 conv (key ``op``) or a 2x2 average pool padded on odd sizes."""

    def __init__(self, channels: int, use_conv: bool, **kw: Any) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_conv:
            return self.op(x)
        return F.avg_pool2d(x, 2, 2, padding=(x.shape[2] % 2, x.shape[3] % 2))


class _ResBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, down: bool, ksize: int, skep: bool, use_conv: bool, **kw: Any) -> None:
        super().__init__()
        pad = ksize // 2
        self.down_opt = _Down(in_c, use_conv, **kw) if down else None
        self.in_conv = nn.Conv2d(in_c, out_c, ksize, 1, pad, **kw) if in_c != out_c or skep else None
        self.block1 = nn.Conv2d(out_c, out_c, 3, 1, 1, **kw)
        self.block2 = nn.Conv2d(out_c, out_c, ksize, 1, pad, **kw)
        self.skep = nn.Conv2d(in_c, out_c, ksize, 1, pad, **kw) if skep else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(F.relu(self.block1(x)))
        return h + (self.skep(x) if self.skep is not None else x)


class T2IAdapter(nn.Module):
    """TencentARC's full ``Adapter``: pixel-unshuffle, conv_in, residual blocks per level, one feature per level."""

    def __init__(self, config: T2IConfig, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.config = c = config
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        down_levels, plain_levels = ((2,), (1,)) if c.xl else ((1, 2, 3), ())
        body: list[nn.Module] = []
        for i, ch in enumerate(c.channels):
            for j in range(c.nums_rb):
                if j == 0 and (i in down_levels or i in plain_levels):
                    body.append(_ResBlock(c.channels[i - 1], ch, i in down_levels, c.ksize, c.skep, c.use_conv, **kw))
                else:
                    body.append(_ResBlock(ch, ch, False, c.ksize, c.skep, c.use_conv, **kw))
        self.body = nn.ModuleList(body)
        self.conv_in = nn.Conv2d(c.cin, c.channels[0], 3, 1, 1, **kw)

    def forward(self, hint: torch.Tensor) -> dict[str, list[torch.Tensor | None]]:
        c = self.config
        x = self.conv_in(F.pixel_unshuffle(hint, c.unshuffle))
        features: list[torch.Tensor | None] = []
        for i in range(len(c.channels)):
            for j in range(c.nums_rb):
                x = self.body[i * c.nums_rb + j](x)
            gaps = (3 if i == 0 else 2 if i == 2 else 1) if c.xl else 2
            features += [None] * gaps + [x]
        features.reverse()
        if c.xl:
            return {"input": features[1:], "middle": features[:1]}
        return {"input": features}


class _LightResBlock(nn.Module):
    def __init__(self, ch: int, **kw: Any) -> None:
        super().__init__()
        self.block1 = nn.Conv2d(ch, ch, 3, 1, 1, **kw)
        self.block2 = nn.Conv2d(ch, ch, 3, 1, 1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(F.relu(self.block1(x))) + x


class _Extractor(nn.Module):
    def __init__(self, in_c: int, inner: int, out_c: int, nums_rb: int, down: bool, **kw: Any) -> None:
        super().__init__()
        self.down_opt = _Down(in_c, False) if down else None
        self.in_conv = nn.Conv2d(in_c, inner, 1, 1, 0, **kw)
        self.body = nn.Sequential(*(_LightResBlock(inner, **kw) for _ in range(nums_rb)))
        self.out_conv = nn.Conv2d(inner, out_c, 1, 1, 0, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        return self.out_conv(self.body(self.in_conv(x)))


class T2IAdapterLight(nn.Module):
    """TencentARC's ``Adapter_light``: one extractor (1x1 in, light residual blocks, 1x1 out) per level."""

    def __init__(self, config: T2IConfig, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.config = c = config
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        ins = (c.cin, *c.channels[:-1])
        inner = c.inner or tuple(ch // 4 for ch in c.channels)
        self.body = nn.ModuleList(_Extractor(ins[i], inner[i], ch, c.nums_rb, i > 0, **kw)
                                  for i, ch in enumerate(c.channels))

    def forward(self, hint: torch.Tensor) -> dict[str, list[torch.Tensor | None]]:
        x = F.pixel_unshuffle(hint, self.config.unshuffle)
        features: list[torch.Tensor | None] = []
        for block in self.body:
            x = block(x)
            features += [None, None, x]
        features.reverse()
        return {"input": features}


def build_t2i(config: T2IConfig) -> nn.Module:
    """The T2I-Adapter network of ``config``."""
    return T2IAdapterLight(config) if config.kind == "light" else T2IAdapter(config)
