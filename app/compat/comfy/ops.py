"""ComfyUI's `comfy.ops` for packs: the layer sets networks are built with, over Loom's `engine.networks.ops`.

`disable_weight_init` is Loom's `Plain` set (ordinary torch layers) and `manual_cast` Loom's `ManualCast`
set (weights cast to the input's dtype and device on each call); layer kinds Loom's networks do not use
(Conv1d, Conv3d, ConvTranspose2d, Embedding) are torch's own in both. ComfyUI's quantised and fp8
operation sets are not provided.
"""
from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from engine.networks.ops import ManualCast, Plain

__all__ = ["cast_bias_weight", "disable_weight_init", "manual_cast"]


class disable_weight_init:  # noqa: N801 (ComfyUI's name)
    """Plain torch layers (Loom's `Plain`)."""

    Linear = Plain.Linear
    Conv2d = Plain.Conv2d
    GroupNorm = Plain.GroupNorm
    LayerNorm = Plain.LayerNorm
    Conv1d = nn.Conv1d
    Conv3d = nn.Conv3d
    ConvTranspose2d = nn.ConvTranspose2d
    Embedding = nn.Embedding

    @classmethod
    def conv_nd(cls, dims: int, *args: Any, **kwargs: Any) -> nn.Module:
        """A 2-d or 3-d convolution of this set."""
        if dims == 2:
            return cls.Conv2d(*args, **kwargs)
        if dims == 3:
            return cls.Conv3d(*args, **kwargs)
        raise ValueError(f"comfy.ops.conv_nd: unsupported dimensions {dims} (2 or 3)")


class manual_cast(disable_weight_init):  # noqa: N801 (ComfyUI's name)
    """Layers whose weights follow the input's dtype and device (Loom's `ManualCast`)."""

    Linear = ManualCast.Linear
    Conv2d = ManualCast.Conv2d
    GroupNorm = ManualCast.GroupNorm
    LayerNorm = ManualCast.LayerNorm


def cast_bias_weight(s: nn.Module, input: torch.Tensor | None = None, dtype: Any = None, device: Any = None,
                     bias_dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(weight, bias)` of layer `s` cast to `input`'s dtype / device (or the ones given)."""
    dtype = dtype if dtype is not None else (input.dtype if input is not None else None)
    device = device if device is not None else (input.device if input is not None else None)
    weight = cast(torch.Tensor, s.weight).to(device=device, dtype=dtype)
    raw_bias = getattr(s, "bias", None)
    bias = cast(torch.Tensor, raw_bias).to(device=device, dtype=bias_dtype or dtype) if raw_bias is not None else None
    return weight, bias
