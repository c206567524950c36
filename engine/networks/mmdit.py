# mypy: disable-error-code="no-any-return,operator,union-attr,arg-type"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""The SD3 / SD3.5 multimodal diffusion transformer (Esser et al. 2024), MMDiT-X variant included.

Image latents become 2x2-patch tokens (a strided conv) plus a centre crop of a learned position grid; text
context (joined CLIP + T5 tokens) is projected to the same width. Each joint block modulates text and image
tokens separately (adaLN from timestep + pooled-text embedding), attends over their concatenation, and runs
separate MLPs; MMDiT-X blocks add a second, image-only attention. The last block's text half stops after
producing its keys / values (pre-only). Attention goes through the engine's SDPA path.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.attention import attention
from engine.networks.configs import MMDiTConfig
from engine.networks.ops import Plain
from engine.networks.unet import timestep_embedding

__all__ = ["MMDiT", "MMDiTConfig"]


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x), 1e-6)


def _embedder(in_dim: int, hidden: int, dtype: torch.dtype | None, device: Any, operations: Any) -> nn.Sequential:
    return nn.Sequential(operations.Linear(in_dim, hidden, bias=True, dtype=dtype, device=device), nn.SiLU(),
                         operations.Linear(hidden, hidden, bias=True, dtype=dtype, device=device))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, pre_only: bool, qk_norm: bool, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = operations.Linear(dim, dim * 3, bias=True, dtype=dtype, device=device)
        if not pre_only:
            self.proj = operations.Linear(dim, dim, dtype=dtype, device=device)
        if qk_norm:
            self.ln_q = RMSNorm(self.head_dim, dtype=dtype, device=device)
            self.ln_k = RMSNorm(self.head_dim, dtype=dtype, device=device)
        self.qk_norm = qk_norm

    def pre_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, -1, self.head_dim).movedim(2, 0)
        if self.qk_norm:
            q, k = self.ln_q(q), self.ln_k(k)
        return q.reshape(b, n, -1), k.reshape(b, n, -1), v.reshape(b, n, -1)


class DismantledBlock(nn.Module):
    """One stream (text or image) of a joint block: adaLN modulation, qkv, (attn2), MLP."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, pre_only: bool, qk_norm: bool, self_attn2: bool,
                 dtype: torch.dtype | None = None, device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.pre_only, self.self_attn2 = pre_only, self_attn2
        self.norm1 = operations.LayerNorm(hidden, elementwise_affine=False, eps=1e-6, **kw)
        self.attn = SelfAttention(hidden, heads, pre_only, qk_norm, operations=operations, **kw)
        if self_attn2:
            self.attn2 = SelfAttention(hidden, heads, False, qk_norm, operations=operations, **kw)
        if not pre_only:
            self.norm2 = operations.LayerNorm(hidden, elementwise_affine=False, eps=1e-6, **kw)
            mlp_hidden = int(hidden * mlp_ratio)
            self.mlp = nn.Module()
            self.mlp.fc1 = operations.Linear(hidden, mlp_hidden, bias=True, **kw)
            self.mlp.fc2 = operations.Linear(mlp_hidden, hidden, bias=True, **kw)
        self.n_mods = 9 if self_attn2 else (2 if pre_only else 6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, self.n_mods * hidden, bias=True,
                                                                           **kw))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp.fc2(F.gelu(self.mlp.fc1(x), approximate="tanh"))

    def pre(self, x: torch.Tensor, c: torch.Tensor) -> tuple[Any, Any, tuple[Any, ...]]:
        mods = self.adaLN_modulation(c).chunk(self.n_mods, dim=1)
        x_norm = self.norm1(x)
        qkv = self.attn.pre_attention(_modulate(x_norm, mods[0], mods[1]))
        qkv2 = self.attn2.pre_attention(_modulate(x_norm, mods[6], mods[7])) if self.self_attn2 else None
        return qkv, qkv2, mods

    def post(self, x: torch.Tensor, attn: torch.Tensor, attn2: torch.Tensor | None, mods: tuple[Any, ...]
             ) -> torch.Tensor:
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
        x = x + gate_msa.unsqueeze(1) * self.attn.proj(attn)
        if attn2 is not None:
            x = x + mods[8].unsqueeze(1) * self.attn2.proj(attn2)
        return x + gate_mlp.unsqueeze(1) * self._mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))


class JointBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float, pre_only: bool, qk_norm: bool, self_attn2: bool,
                 dtype: torch.dtype | None = None, device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device, "operations": operations}
        self.heads = heads
        self.context_block = DismantledBlock(hidden, heads, mlp_ratio, pre_only, qk_norm, False, **kw)
        self.x_block = DismantledBlock(hidden, heads, mlp_ratio, False, qk_norm, self_attn2, **kw)

    def forward(self, context: torch.Tensor, x: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        c_qkv, _, c_mods = self.context_block.pre(context, c)
        x_qkv, x_qkv2, x_mods = self.x_block.pre(x, c)
        q, k, v = (torch.cat((a, b), dim=1) for a, b in zip(c_qkv, x_qkv, strict=True))
        attn = attention(q, k, v, self.heads)
        n_ctx = context.shape[1]
        new_context = None if self.context_block.pre_only else self.context_block.post(
            context, attn[:, :n_ctx], None, c_mods)
        attn2 = attention(x_qkv2[0], x_qkv2[1], x_qkv2[2], self.heads) if x_qkv2 is not None else None
        return new_context, self.x_block.post(x, attn[:, n_ctx:], attn2, x_mods)


def _run_joint(block: JointBlock, args: dict[str, Any]) -> dict[str, Any]:
    txt, img = block(args["txt"], args["img"], args["vec"])
    return {"txt": txt, "img": img}


class MMDiT(nn.Module):
    """forward(x [B, C, H, W], timestep [B] (sigma x 1000), context [B, T, ctx], y [B, adm]) -> velocity."""

    def __init__(self, config: MMDiTConfig, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        c = self.config = config
        hidden, p = c.hidden_size, c.patch_size
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.x_embedder = nn.Module()
        self.x_embedder.proj = operations.Conv2d(c.in_channels, hidden, kernel_size=p, stride=p, bias=True, **kw)
        self.pos_embed = nn.Parameter(torch.empty(1, c.pos_embed_max ** 2, hidden, **kw))
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = _embedder(256, hidden, dtype, device, operations)
        self.y_embedder = nn.Module()
        self.y_embedder.mlp = _embedder(c.adm_in_channels, hidden, dtype, device, operations)
        self.context_embedder = operations.Linear(c.context_dim, hidden, bias=True, **kw)
        self.joint_blocks = nn.ModuleList(
            JointBlock(hidden, c.num_heads, c.mlp_ratio, i == c.depth - 1, c.qk_norm, i in c.x_self_attn_layers,
                       operations=operations, **kw) for i in range(c.depth))
        self.final_layer = nn.Module()
        self.final_layer.norm_final = operations.LayerNorm(hidden, elementwise_affine=False, eps=1e-6, **kw)
        self.final_layer.linear = operations.Linear(hidden, p * p * c.in_channels, bias=True, **kw)
        self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, 2 * hidden,
                                                                                       bias=True, **kw))

    def _pos(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        m = self.config.pos_embed_max
        if h > m or w > m:
            raise ValueError(f"MMDiT: a {h}x{w}-patch image exceeds the {m}x{m} position grid of this model")
        top, left = (m - h) // 2, (m - w) // 2
        grid = self.pos_embed.reshape(1, m, m, -1)[:, top:top + h, left:left + w, :]
        return grid.reshape(1, h * w, -1).to(like)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, transformer_options: dict[str, Any] | None = None,
                **unused: Any) -> torch.Tensor:
        """``transformer_options["patches_replace"]["dit"][("double_block", i)]`` replaces joint block i."""
        c = self.config
        if context is None or y is None:
            raise ValueError("MMDiT needs a text context and a pooled vector")
        b, _, h, w = x.shape
        p = c.patch_size
        pad_h, pad_w = (-h) % p, (-w) % p
        xp = F.pad(x, (0, pad_w, 0, pad_h), mode="circular") if pad_h or pad_w else x
        hp, wp = (h + p - 1) // p, (w + p - 1) // p
        tokens = self.x_embedder.proj(xp).flatten(2).transpose(1, 2)
        tokens = tokens + self._pos(hp, wp, tokens)
        mod = self.t_embedder.mlp(timestep_embedding(timestep, 256).to(tokens.dtype))
        mod = mod + self.y_embedder.mlp(y.to(tokens.dtype))
        ctx: torch.Tensor | None = self.context_embedder(context.to(tokens.dtype))
        options = transformer_options or {}
        replace = (options.get("patches_replace") or {}).get("dit", {})
        for i, block in enumerate(self.joint_blocks):
            assert ctx is not None
            patch = replace.get(("double_block", i))
            if patch is None:
                ctx, tokens = block(ctx, tokens, mod)
            else:  # ComfyUI's block replacement: args img / txt / vec, the block itself as "original_block"
                out = patch({"img": tokens, "txt": ctx, "vec": mod, "transformer_options": options},
                            {"original_block": partial(_run_joint, block)})
                ctx, tokens = out["txt"], out["img"]
        shift, scale = self.final_layer.adaLN_modulation(mod).chunk(2, dim=1)
        out = self.final_layer.linear(_modulate(self.final_layer.norm_final(tokens), shift, scale))
        out = out.reshape(b, hp, wp, p, p, c.in_channels).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c.in_channels, hp * p, wp * p)[:, :, :h, :w]
