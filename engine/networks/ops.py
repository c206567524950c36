# mypy: disable-error-code="arg-type,no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""Layer factories injected into the networks so casting / offload can change without touching them.

A network takes ``operations`` (a class with ``Linear``, ``Conv2d``, ``GroupNorm``, ``LayerNorm``) the way
ComfyUI's networks do. ``Plain`` builds ordinary torch layers; ``ManualCast`` casts weights to the input's
dtype and device at call time, for weights stored in a different dtype than the compute dtype.
``CpuBf16`` runs convolutions and linear layers in their weights' dtype (bf16: oneDNN accumulates in fp32) and
returns the input's dtype, so activations and norms stay fp32 (the per-operator choice: engine.precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Plain", "ManualCast", "CpuBf16", "Operations"]


def _cast(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    if weight.dtype == like.dtype and weight.device == like.device:
        return weight
    return weight.to(device=like.device, dtype=like.dtype)


class Plain:
    """Ordinary torch layers."""

    Linear = nn.Linear
    Conv2d = nn.Conv2d
    GroupNorm = nn.GroupNorm
    LayerNorm = nn.LayerNorm


class ManualCast:
    """Layers whose weights are cast to the input's dtype/device on each call (weights stay as stored)."""

    class Linear(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, _cast(self.weight, x), _cast(self.bias, x))

    class Conv2d(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self._conv_forward(x, _cast(self.weight, x), _cast(self.bias, x))

    class GroupNorm(nn.GroupNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.group_norm(x, self.num_groups, _cast(self.weight, x), _cast(self.bias, x), self.eps)

    class LayerNorm(nn.LayerNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(
                x, self.normalized_shape, _cast(self.weight, x), _cast(self.bias, x), self.eps
            )


class CpuBf16:
    """Convs and linears computed in the weights' dtype (bf16), results back in the input's dtype (fp32);
    norms are ordinary fp32 layers."""

    class Linear(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight
            return F.linear(x.to(w.dtype), w, _cast(self.bias, w)).to(x.dtype)

    class Conv2d(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.weight
            return self._conv_forward(x.to(w.dtype), w, _cast(self.bias, w)).to(x.dtype)

    GroupNorm = nn.GroupNorm
    LayerNorm = nn.LayerNorm


Operations = type[Plain] | type[ManualCast] | type[CpuBf16]
