"""ComfyUI's `comfy.ldm.flux.math` for packs: Flux's rotary position embedding (`rope`, `apply_rope`,
`apply_rope1`) and its attention (`attention(q, k, v, pe, mask, transformer_options)`), over Loom's Flux network
functions (`engine.networks.flux`) and attention."""
from __future__ import annotations

from typing import Any

import torch
from comfy.ldm.modules.attention import optimized_attention

from engine.networks.flux import apply_rope, rope

__all__ = ["apply_rope", "apply_rope1", "attention", "rope"]


def apply_rope1(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate the consecutive channel pairs of one tensor by ``freqs_cis`` (`rope`'s 2x2 matrices)."""
    return _rotate(x, freqs_cis)


def _rotate(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    pairs = x.to(freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs_cis[..., 0] * pairs[..., 0] + freqs_cis[..., 1] * pairs[..., 1]
    return out.reshape(*x.shape).type_as(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor | None, mask: Any = None,
              transformer_options: dict[str, Any] | None = None) -> torch.Tensor:
    """RoPE (when ``pe`` is given) then multi-head attention; q, k, v [B, H, L, D] -> [B, L, H*D]."""
    if pe is not None:
        q, k = _rotate(q, pe), _rotate(k, pe)
    out: torch.Tensor = optimized_attention(q, k, v, q.shape[1], skip_reshape=True, mask=mask,
                                            transformer_options=transformer_options or {})
    return out
