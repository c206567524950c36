"""ComfyUI's `comfy.ldm.modules.attention` for packs: the attention functions (`optimized_attention`, the
per-backend names `attention_basic` / `_pytorch` / `_split` / `_sub_quad` / `_xformers`, and
`optimized_attention_for_device`) over Loom's attention, the SDPA function the UNet's own attention layers use,
and the UNet's attention classes (`CrossAttention`, `BasicTransformerBlock`, `SpatialTransformer`) as
`isinstance` / attribute targets.

ComfyUI picks among several kernels; Loom has one (torch's scaled_dot_product_attention), so every name is the
same function with ComfyUI's signature.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from engine.networks.attention import (
    BasicTransformerBlock,
    CrossAttention,
    SpatialTransformer,
    multihead_attention,
)

__all__ = ["wrap_attn", "optimized_attention", "optimized_attention_masked", "optimized_attention_for_device", "attention_basic",
           "attention_pytorch", "attention_split", "attention_sub_quad", "attention_xformers",
           "BasicTransformerBlock", "CrossAttention", "SpatialTransformer", "SpatialVideoTransformer"]

AttentionFunction = Callable[..., torch.Tensor]


def wrap_attn(func: AttentionFunction) -> AttentionFunction:
    """ComfyUI's attention decorator: a call whose ``transformer_options`` keyword holds
    ``"optimized_attention_override"`` goes to ``override(func, *args, **kwargs)`` instead (once: calls made from
    inside the override carry ``_inside_attn_wrapper`` and run ``func``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        if "_inside_attn_wrapper" in kwargs:
            return func(*args, **kwargs)
        options = kwargs.get("transformer_options")
        override = options.get("optimized_attention_override") if options is not None else None
        kwargs["_inside_attn_wrapper"] = True
        if override is not None:
            return override(func, *args, **kwargs)  # type: ignore[no-any-return]
        return func(*args, **kwargs)

    return wrapper


@wrap_attn
def optimized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Any = None,
                        attn_precision: Any = None, skip_reshape: bool = False,
                        skip_output_reshape: bool = False, **kwargs: Any) -> torch.Tensor:
    """Multi-head attention on [B, T, heads*d] tensors (or [B, heads, T, d] with `skip_reshape`). Other keywords
    (``transformer_options``, ...) are accepted and unused, as in ComfyUI's kernels."""
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


class SpatialVideoTransformer(SpatialTransformer):
    """ComfyUI's SVD video transformer: subclassable for packs, not buildable (Loom has no video UNet)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("comfy.ldm.modules.attention.SpatialVideoTransformer: Loom has no video (SVD) UNet")
