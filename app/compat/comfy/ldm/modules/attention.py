"""ComfyUI's `comfy.ldm.modules.attention` for packs: `optimized_attention` (and its aliases) over Loom's
attention, the function the UNet's own attention layers use."""
from __future__ import annotations

from typing import Any

import torch

from engine.networks.attention import multihead_attention

__all__ = ["optimized_attention", "optimized_attention_masked", "attention_basic", "attention_pytorch"]


def optimized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Any = None,
                        attn_precision: Any = None, skip_reshape: bool = False,
                        skip_output_reshape: bool = False) -> torch.Tensor:
    """Multi-head attention on [B, T, heads*d] tensors (or [B, heads, T, d] with `skip_reshape`)."""
    return multihead_attention(q, k, v, heads, mask=mask, skip_reshape=skip_reshape,
                               skip_output_reshape=skip_output_reshape)


optimized_attention_masked = optimized_attention
attention_basic = optimized_attention
attention_pytorch = optimized_attention
