"""ComfyUI's `comfy.ldm.modules.attention` for packs: the attention functions (`optimized_attention`, the
per-backend names `attention_basic` / `_pytorch` / `_split` / `_sub_quad` / `_xformers`, and
`optimized_attention_for_device`) over Loom's attention, the SDPA function the UNet's own attention layers use,
and the UNet's attention classes (`CrossAttention`, `BasicTransformerBlock`, `SpatialTransformer`) as
`isinstance` / attribute targets.

ComfyUI picks among several kernels; Loom has one (torch's scaled_dot_product_attention), so every name is the
same function with ComfyUI's signature.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from engine.networks.attention import (
    BasicTransformerBlock,
    CrossAttention,
    SpatialTransformer,
    multihead_attention,
)

__all__ = ["optimized_attention", "optimized_attention_masked", "optimized_attention_for_device", "attention_basic",
           "attention_pytorch", "attention_split", "attention_sub_quad", "attention_xformers",
           "BasicTransformerBlock", "CrossAttention", "SpatialTransformer"]

AttentionFunction = Callable[..., torch.Tensor]


def optimized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Any = None,
                        attn_precision: Any = None, skip_reshape: bool = False,
                        skip_output_reshape: bool = False) -> torch.Tensor:
    """Multi-head attention on [B, T, heads*d] tensors (or [B, heads, T, d] with `skip_reshape`)."""
    return multihead_attention(q, k, v, heads, mask=mask, skip_reshape=skip_reshape,
                               skip_output_reshape=skip_output_reshape)


optimized_attention_masked = optimized_attention
attention_basic = optimized_attention
attention_pytorch = optimized_attention
attention_split = optimized_attention
attention_sub_quad = optimized_attention
attention_xformers = optimized_attention


def optimized_attention_for_device(device: Any = None, mask: bool = False, small_input: bool = False
                                   ) -> AttentionFunction:
    """The attention function for `device` (ComfyUI chooses a kernel; Loom has one for every device)."""
    return optimized_attention
