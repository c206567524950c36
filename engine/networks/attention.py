# mypy: disable-error-code="no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""Transformer pieces of the LDM UNet: cross-attention, GEGLU feed-forward, SpatialTransformer."""
from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.ops import CpuBf16, ManualCast, Plain

# Feed-forward token chunks on CPU: a chunk's GEGLU activation stays about FF_CHUNK_FLOATS floats (8 MiB), so
# it is reused from the heap and stays in cache instead of being a fresh mmap'd buffer; at least
# FF_CHUNK_MIN_ROWS rows per chunk, so the (up to 52 MB) weights of the deep levels are not re-read per chunk.
FF_CHUNK_FLOATS = 1 << 21
FF_CHUNK_MIN_ROWS = 1024
_PLAIN_LINEAR_FORWARDS = (nn.Linear.forward, ManualCast.Linear.forward)


def _hooked(*modules: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _linear_dtype(layer: nn.Module, x: torch.Tensor) -> torch.dtype | None:
    """The dtype ``layer`` computes in when its weight may be used as is with ``x``: ``x.dtype`` for an
    ordinary Linear, the weight's dtype for a CpuBf16 one (input cast to it, result back to ``x.dtype``);
    None for anything else (hooked or custom layers, weights cast per call)."""
    w = getattr(layer, "weight", None)
    b = getattr(layer, "bias", None)
    forward = getattr(type(layer), "forward", None)
    if w is None or w.device != x.device or (b is not None and b.device != x.device) or _hooked(layer):
        return None
    if forward is CpuBf16.Linear.forward:
        return w.dtype
    if forward in _PLAIN_LINEAR_FORWARDS and w.dtype == x.dtype and (b is None or b.dtype == x.dtype):
        return x.dtype
    return None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention on [B, T, heads*d] tensors through torch's fused SDPA."""
    b, _, inner = q.shape
    d = inner // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, -1, inner)


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Any = None,
                        skip_reshape: bool = False, skip_output_reshape: bool = False) -> torch.Tensor:
    """ComfyUI's ``optimized_attention`` contract: [B, T, heads*d] tensors (or [B, heads, T, d] with
    ``skip_reshape``), an optional additive / boolean ``mask`` broadcast to [B, heads, Tq, Tk]; the output is
    [B, Tq, heads*d] (or [B, heads, Tq, d] with ``skip_output_reshape``). Without a mask and reshape flags it
    is ``attention`` (the UNet's own)."""
    if mask is None and not skip_reshape and not skip_output_reshape:
        return attention(q, k, v, heads)
    if not skip_reshape:
        b, _, inner = q.shape
        q, k, v = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        if mask.dtype != torch.bool:
            mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(out.shape[0], -1, out.shape[1] * out.shape[3])


class CrossAttention(nn.Module):
    """Attention from ``x`` to ``context`` (self-attention when context is None).

    Parameters: query_dim: width of x; context_dim: width of context (None = query_dim);
    heads, dim_head: head count and width; operations: layer factory (engine.networks.ops).
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dtype: torch.dtype | None = None, device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = operations.Linear(query_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_out = nn.Sequential(operations.Linear(inner, query_dim, dtype=dtype, device=device), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class GEGLU(nn.Module):
    """Linear projection to 2x width, then value * gelu(gate)."""

    def __init__(self, dim_in: int, dim_out: int, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.proj = operations.Linear(dim_in, dim_out * 2, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP with 4x inner width (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(
            GEGLU(dim, inner, dtype=dtype, device=device, operations=operations),
            nn.Dropout(0.0),
            operations.Linear(inner, dim, dtype=dtype, device=device),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geglu, drop, out_proj = self.net
        wdt = _linear_dtype(geglu.proj, x) if type(geglu) is GEGLU else None
        if (x.device.type != "cpu" or torch.is_grad_enabled() or wdt is None
                or _linear_dtype(out_proj, x) != wdt or _hooked(self.net, geglu, drop)):
            return self.net(x)
        # CPU inference: the same maths in token chunks, gelu and the product in place. At 64x64 latents
        # the unchunked GEGLU output is [8192, 2560] fp32 (84 MB): fresh pages on every call (~130 ms of page
        # faults per block on the development VM) and three passes over memory that does not fit in cache.
        # CpuBf16 layers (bf16 weights, fp32 activations) cast each chunk, as their forward casts the whole.
        proj, lin = cast(nn.Linear, geglu.proj), cast(nn.Linear, out_proj)
        x2 = x.reshape(-1, x.shape[-1])
        rows = x2.shape[0]
        step = max(FF_CHUNK_MIN_ROWS, FF_CHUNK_FLOATS // (2 * lin.in_features))
        out = torch.empty(rows, lin.out_features, dtype=x.dtype, device=x.device)
        w_out = lin.weight.t()
        b_proj, b_out = (None if b is None else b.to(wdt) for b in (proj.bias, lin.bias))
        for start in range(0, rows, step):
            h = F.linear(x2[start:start + step].to(wdt), proj.weight, b_proj).to(x.dtype)
            value, gate = h.chunk(2, dim=-1)
            torch._C._nn.gelu_(gate)  # type: ignore[attr-defined]  # in-place F.gelu (same kernel)
            value.mul_(gate)
            if wdt != x.dtype:
                out[start:start + step] = F.linear(value.to(wdt), lin.weight, b_out)
            elif lin.bias is None:
                torch.mm(value, w_out, out=out[start:start + step])
            else:
                torch.addmm(lin.bias, value, w_out, out=out[start:start + step])
        return out.view(*x.shape[:-1], lin.out_features)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention, feed-forward; pre-norm residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None,
                 dtype: torch.dtype | None = None, device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.attn1 = CrossAttention(dim, None, heads, dim_head, operations=operations, **kw)
        self.ff = FeedForward(dim, operations=operations, **kw)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, operations=operations, **kw)
        self.norm1 = operations.LayerNorm(dim, **kw)
        self.norm2 = operations.LayerNorm(dim, **kw)
        self.norm3 = operations.LayerNorm(dim, **kw)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                transformer_options: dict[str, Any] | None = None) -> torch.Tensor:
        if transformer_options and (transformer_options.get("patches") or transformer_options.get("patches_replace")):
            return patched_block_forward(self, x, context, transformer_options)
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


def _attend(attn: CrossAttention, n: torch.Tensor, context: torch.Tensor, value: torch.Tensor,
            replace: Any, extra: dict[str, Any]) -> torch.Tensor:
    q, k, v = attn.to_q(n), attn.to_k(context), attn.to_v(value)
    out = replace(q, k, v, extra) if replace is not None else attention(q, k, v, attn.heads)
    return attn.to_out(out)


def patched_block_forward(block: BasicTransformerBlock, x: torch.Tensor, context: torch.Tensor | None,
                          transformer_options: dict[str, Any]) -> torch.Tensor:
    """BasicTransformerBlock with ComfyUI's ``transformer_options`` patches (comfy/ldm/modules/attention.py).

    ``patches``: ``attn1_patch`` / ``attn2_patch`` (``p(n, context, value, extra) -> (n, context, value)``),
    ``attn1_output_patch`` / ``attn2_output_patch`` (``p(n, extra) -> n``), ``middle_patch`` (``p(x, extra)``).
    ``patches_replace["attn1" | "attn2"]``, keyed by ``(block_kind, block_id, transformer_block_index)`` or
    ``(block_kind, block_id)``: ``p(q, k, v, extra) -> attention output`` instead of the attention itself.
    ``extra`` holds the other options (``block``, ``block_index``, ``transformer_index``, ``cond_or_uncond``,
    ``sigmas``, ``original_shape``, ``activations_shape``, ...) plus ``n_heads`` and ``dim_head``.
    """
    patches: dict[str, list[Any]] = transformer_options.get("patches") or {}
    replace: dict[str, dict[Any, Any]] = transformer_options.get("patches_replace") or {}
    extra = {k: v for k, v in transformer_options.items() if k not in ("patches", "patches_replace")}
    heads = block.attn1.heads
    extra["n_heads"] = heads
    extra["dim_head"] = block.attn1.to_q.out_features // heads
    extra["attn_precision"] = None
    where = transformer_options.get("block")
    key = (where[0], where[1], transformer_options.get("block_index", 0)) if where is not None else None

    def lookup(kind: str) -> Any:
        table = replace.get(kind, {})
        return table.get(key) if key in table else table.get(where)

    n = block.norm1(x)
    ctx1, val1 = n, n
    for p in patches.get("attn1_patch", ()):
        n, ctx1, val1 = p(n, ctx1, val1, extra)
    n = _attend(block.attn1, n, ctx1, val1, lookup("attn1"), extra)
    for p in patches.get("attn1_output_patch", ()):
        n = p(n, extra)
    x = n + x
    for p in patches.get("middle_patch", ()):
        x = p(x, extra)
    n = block.norm2(x)
    ctx2 = n if context is None else context
    val2 = ctx2
    for p in patches.get("attn2_patch", ()):
        n, ctx2, val2 = p(n, ctx2, val2, extra)
    n = _attend(block.attn2, n, ctx2, val2, lookup("attn2"), extra)
    for p in patches.get("attn2_output_patch", ()):
        n = p(n, extra)
    x = n + x
    return block.ff(block.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Transformer over the pixels of a feature map (LDM layout).

    Parameters: in_channels: feature channels; heads, dim_head: attention shape; depth: number of blocks;
    context_dim: cross-attention width; use_linear: 1x1 conv (SD1) or Linear (SD2/SDXL) proj_in/proj_out.
    """

    def __init__(self, in_channels: int, heads: int, dim_head: int, depth: int = 1,
                 context_dim: int | None = None, use_linear: bool = False, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = operations.GroupNorm(32, in_channels, eps=1e-6, affine=True, **kw)
        if use_linear:
            self.proj_in = operations.Linear(in_channels, inner, **kw)
            self.proj_out = operations.Linear(inner, in_channels, **kw)
        else:
            self.proj_in = operations.Conv2d(in_channels, inner, 1, **kw)
            self.proj_out = operations.Conv2d(inner, in_channels, 1, **kw)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim, operations=operations, **kw)
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                transformer_options: dict[str, Any] | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if transformer_options is not None:
            transformer_options["activations_shape"] = list(x.shape)
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        # Token-major [b, hw, c], made contiguous once here rather than inside every norm / residual add.
        x = x.flatten(2).transpose(1, 2).contiguous()
        if self.use_linear:
            x = self.proj_in(x)
        for i, block in enumerate(self.transformer_blocks):
            if transformer_options is None:
                x = block(x, context)
            else:
                transformer_options["block_index"] = i
                x = block(x, context, transformer_options)
        if self.use_linear:
            x = self.proj_out(x)
        # Back to NCHW-contiguous. Without the copy this is a channels_last *view*, the residual add below keeps
        # that layout, and every later conv of the UNet then runs channels_last and converts its (NCHW) weight
        # on each call: ~2.8 s of weight copies per full-size SD1.5 call on CPU (1280x2560x3x3 = 118 MB each).
        x = x.transpose(1, 2).reshape(b, -1, h, w).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in
