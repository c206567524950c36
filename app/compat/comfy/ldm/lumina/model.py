"""ComfyUI's `comfy.ldm.lumina.model` for packs: only `FeedForward`, the SwiGLU feed-forward of the Lumina 2 /
Ideogram-style transformers (packs patch its `forward`). Loom loads no Lumina model, so nothing in Loom builds one;
the class works as a module on its own."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeedForward"]


class FeedForward(nn.Module):
    """``w2(silu(w1 x) * w3 x)``, bias-free; the hidden width is ``hidden_dim`` (times ``ffn_dim_multiplier``)
    rounded up to a multiple of ``multiple_of``.

    Parameters:
        dim: input and output width.
        hidden_dim: hidden width before the multiplier and rounding.
        multiple_of: the hidden width is rounded up to a multiple of this.
        ffn_dim_multiplier: optional factor applied to ``hidden_dim`` first.
        operation_settings: ComfyUI's ``{"operations", "device", "dtype"}``; ``operations`` provides ``Linear``
            (``torch.nn`` when absent).
    """

    def __init__(self, dim: int, hidden_dim: int, multiple_of: int, ffn_dim_multiplier: float | None,
                 operation_settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        settings = operation_settings or {}
        if ffn_dim_multiplier is not None:
            hidden_dim = int(ffn_dim_multiplier * hidden_dim)
        hidden_dim = multiple_of * -(-hidden_dim // multiple_of)
        linear = (settings.get("operations") or nn).Linear
        factory = {"device": settings.get("device"), "dtype": settings.get("dtype")}
        self.w1 = linear(dim, hidden_dim, bias=False, **factory)
        self.w2 = linear(hidden_dim, dim, bias=False, **factory)
        self.w3 = linear(dim, hidden_dim, bias=False, **factory)

    def _forward_silu_gating(self, x1: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        return F.silu(x1) * x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self._forward_silu_gating(self.w1(x), self.w3(x)))  # type: ignore[no-any-return]
