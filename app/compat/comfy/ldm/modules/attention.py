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
from torch import nn

from engine.networks.attention import (
    GEGLU,
    BasicTransformerBlock,
    CrossAttention,
    SpatialTransformer,
    multihead_attention,
)
from engine.networks.attention import FeedForward as _FeedForward
from engine.networks.ops import Plain

__all__ = ["wrap_attn", "optimized_attention", "optimized_attention_masked", "optimized_attention_for_device", "attention_basic",
           "attention_pytorch", "attention_split", "attention_sub_quad", "attention_xformers",
           "BasicTransformerBlock", "CrossAttention", "SpatialTransformer", "SpatialVideoTransformer", "FeedForward",
           "GEGLU", "default", "exists"]

AttentionFunction = Callable[..., torch.Tensor]


def exists(value: Any) -> bool:
    """ComfyUI's helper: ``value is not None``."""
    return value is not None


def default(value: Any, fallback: Any) -> Any:
    """ComfyUI's helper: ``value`` unless it is None, else ``fallback``."""
    return value if value is not None else fallback


class FeedForward(_FeedForward):
    """The UNet's feed-forward block (Loom's, keys ``net.0.proj`` / ``net.2``) with ComfyUI's constructor:
    ``glu=False`` projects in with a linear + GELU (keys ``net.0.0``), ``dim_out`` defaults to ``dim``."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: float = 4, glu: bool = False,
                 dropout: float = 0.0, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        nn.Module.__init__(self)
        inner = int(dim * mult)
        project_in = (GEGLU(dim, inner, dtype=dtype, device=device, operations=operations) if glu else
                      nn.Sequential(operations.Linear(dim, inner, dtype=dtype, device=device), nn.GELU()))
        self.net = nn.Sequential(project_in, nn.Dropout(dropout),
                                 operations.Linear(inner, default(dim_out, dim), dtype=dtype, device=device))


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
