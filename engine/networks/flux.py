# mypy: disable-error-code="no-any-return,operator,union-attr,arg-type"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""The Flux.1 rectified-flow transformer (Black Forest Labs 2024), written for the engine like the UNet.

Image latents are cut into 2x2 patches (tokens), T5 tokens are projected to the same width; ``depth``
double-stream blocks keep separate weights for text and image tokens and attend jointly, then
``depth_single_blocks`` single-stream blocks run on the concatenated sequence (attention and MLP in parallel
from one projection). All blocks are modulated (shift / scale / gate) by ``vec`` = embedded timestep
(+ embedded guidance for dev) + projected CLIP-L pooled vector. Positions enter through rotary embeddings
over (text index, row, column) ids split as ``axes_dim``. Attention goes through the engine's SDPA path.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.attention import attention
from engine.networks.configs import FluxConfig
from engine.networks.ops import Plain

__all__ = ["Flux", "FluxConfig", "REFERENCE_METHODS", "flux_timestep_embedding", "reference_placements", "rope",
           "apply_rope"]


def flux_timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                            time_factor: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``t * time_factor`` (cos half first)."""
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope(pos: torch.Tensor, dim: int, theta: int) -> torch.Tensor:
    """Rotation matrices [B, N, dim/2, 2, 2] for positions ``pos`` [B, N] (frequencies in float64)."""
    scale = torch.linspace(0, (dim - 2) / dim, steps=dim // 2, dtype=torch.float64, device=pos.device)
    omega = 1.0 / (theta ** scale)
    out = pos.to(torch.float64)[..., None] * omega
    cos, sin = torch.cos(out), torch.sin(out)
    mats = torch.stack([cos, -sin, sin, cos], dim=-1)
    return mats.reshape(*mats.shape[:-1], 2, 2).float()


def apply_rope(xq: torch.Tensor, xk: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate consecutive channel pairs of q and k [B, H, L, D] by ``freqs`` [B, 1, L, D/2, 2, 2]."""
    def rot(x: torch.Tensor) -> torch.Tensor:
        x_ = x.to(freqs.dtype).reshape(*x.shape[:-1], -1, 1, 2)
        out = freqs[..., 0] * x_[..., 0] + freqs[..., 1] * x_[..., 1]
        return out.reshape(*x.shape).type_as(x)
    return rot(xq), rot(xk)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """RoPE then SDPA; q, k, v [B, H, L, D] -> [B, L, H*D]."""
    q, k = apply_rope(q, k, pe)
    heads = q.shape[1]
    flat = [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], -1) for t in (q, k, v)]
    return attention(flat[0], flat[1], flat[2], heads)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, L, 3*H*D] -> three [B, H, L, D]."""
    b, n, _ = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


class RMSNorm(nn.Module):
    """``x / rms(x) * scale`` over the last dim (eps 1e-6); the gain is named ``scale`` as in the files."""

    def __init__(self, dim: int, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.scale.to(x), 1e-6)


class QKNorm(nn.Module):
    def __init__(self, dim: int, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.query_norm = RMSNorm(dim, dtype=dtype, device=device)
        self.key_norm = RMSNorm(dim, dtype=dtype, device=device)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden: int, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.in_layer = operations.Linear(in_dim, hidden, bias=True, dtype=dtype, device=device)
        self.out_layer = operations.Linear(hidden, hidden, bias=True, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = operations.Linear(dim, dim * 3, bias=qkv_bias, dtype=dtype, device=device)
        self.norm = QKNorm(dim // heads, dtype=dtype, device=device)
        self.proj = operations.Linear(dim, dim, dtype=dtype, device=device)


class Modulation(nn.Module):
    """``vec`` -> (shift, scale, gate) once (single) or twice (double), each [B, 1, dim]."""

    def __init__(self, dim: int, double: bool, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = operations.Linear(dim, self.multiplier * dim, bias=True, dtype=dtype, device=device)

    def forward(self, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1)


def _layer_norm(dim: int, dtype: torch.dtype | None, device: Any, operations: Any) -> nn.Module:
    return operations.LayerNorm(dim, elementwise_affine=False, eps=1e-6, dtype=dtype, device=device)


def _mlp(dim: int, hidden: int, dtype: torch.dtype | None, device: Any, operations: Any) -> nn.Sequential:
    return nn.Sequential(operations.Linear(dim, hidden, bias=True, dtype=dtype, device=device),
                         nn.GELU(approximate="tanh"),
                         operations.Linear(hidden, dim, bias=True, dtype=dtype, device=device))


class DoubleStreamBlock(nn.Module):
    """Separate text / image weights, joint attention over [text, image] tokens."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, qkv_bias: bool, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        mlp_hidden = int(hidden * mlp_ratio)
        kw: dict[str, Any] = {"dtype": dtype, "device": device, "operations": operations}
        self.heads = heads
        for side in ("img", "txt"):
            setattr(self, f"{side}_mod", Modulation(hidden, True, **kw))
            setattr(self, f"{side}_norm1", _layer_norm(hidden, dtype, device, operations))
            setattr(self, f"{side}_attn", SelfAttention(hidden, heads, qkv_bias, **kw))
            setattr(self, f"{side}_norm2", _layer_norm(hidden, dtype, device, operations))
            setattr(self, f"{side}_mlp", _mlp(hidden, mlp_hidden, dtype, device, operations))

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        i_shift1, i_scale1, i_gate1, i_shift2, i_scale2, i_gate2 = self.img_mod(vec)
        t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = self.txt_mod(vec)
        iq, ik, iv = _split_heads(self.img_attn.qkv((1 + i_scale1) * self.img_norm1(img) + i_shift1), self.heads)
        iq, ik = self.img_attn.norm(iq, ik, iv)
        tq, tk, tv = _split_heads(self.txt_attn.qkv((1 + t_scale1) * self.txt_norm1(txt) + t_shift1), self.heads)
        tq, tk = self.txt_attn.norm(tq, tk, tv)
        attn = _attend(torch.cat((tq, iq), dim=2), torch.cat((tk, ik), dim=2), torch.cat((tv, iv), dim=2), pe)
        n_txt = txt.shape[1]
        txt_attn, img_attn = attn[:, :n_txt], attn[:, n_txt:]
        img = img + i_gate1 * self.img_attn.proj(img_attn)
        img = img + i_gate2 * self.img_mlp((1 + i_scale2) * self.img_norm2(img) + i_shift2)
        txt = txt + t_gate1 * self.txt_attn.proj(txt_attn)
        txt = txt + t_gate2 * self.txt_mlp((1 + t_scale2) * self.txt_norm2(txt) + t_shift2)
        return img, txt


class SingleStreamBlock(nn.Module):
    """One projection to q, k, v and the MLP input; attention and MLP outputs joined by one projection."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        self.hidden, self.heads = hidden, heads
        self.mlp_hidden = int(hidden * mlp_ratio)
        self.linear1 = operations.Linear(hidden, hidden * 3 + self.mlp_hidden, dtype=dtype, device=device)
        self.linear2 = operations.Linear(hidden + self.mlp_hidden, hidden, dtype=dtype, device=device)
        self.norm = QKNorm(hidden // heads, dtype=dtype, device=device)
        self.pre_norm = _layer_norm(hidden, dtype, device, operations)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden, False, dtype=dtype, device=device, operations=operations)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(vec)
        qkv, mlp = torch.split(self.linear1((1 + scale) * self.pre_norm(x) + shift),
                               [3 * self.hidden, self.mlp_hidden], dim=-1)
        q, k, v = _split_heads(qkv, self.heads)
        q, k = self.norm(q, k, v)
        attn = _attend(q, k, v, pe)
        return x + gate * self.linear2(torch.cat((attn, self.mlp_act(mlp)), 2))


class LastLayer(nn.Module):
    def __init__(self, hidden: int, patch: int, out_channels: int, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        self.norm_final = _layer_norm(hidden, dtype, device, operations)
        self.linear = operations.Linear(hidden, patch * patch * out_channels, bias=True, dtype=dtype, device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, 2 * hidden, bias=True,
                                                                           dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear((1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :])


REFERENCE_METHODS = ("offset", "index", "uxo")


def reference_placements(hl: int, wl: int, patch: int, sizes: Sequence[Sequence[int]], method: str
                         ) -> list[tuple[float, int, int]]:
    """(index, row offset, column offset) of each reference latent of ``sizes`` [(H, W)] next to an ``hl`` x ``wl``
    patch image, offsets in latent pixels (ComfyUI's ``Flux._forward``):

    - "offset" (default): index 1; each reference is placed right of or below the ones before it, whichever keeps
      the covered region squarer;
    - "index": offsets 0, the index counts the references 1, 2, ...;
    - "uxo" (UNO / USO): index 0, each reference diagonally past the image and the references before it.
    """
    if method not in REFERENCE_METHODS:
        raise ValueError(f"Flux: unknown reference latents method {method!r}; expected one of {REFERENCE_METHODS}")
    out: list[tuple[float, int, int]] = []
    h = w = 0
    index = 0.0
    for rh, rw in ((int(s[0]), int(s[1])) for s in sizes):
        if method == "index":
            index += 1.0
            out.append((index, 0, 0))
        elif method == "uxo":
            out.append((0.0, hl * patch + h, wl * patch + w))
            h, w = h + rh, w + rw
        else:
            h_off, w_off = (0, w) if rh + h > rw + w else (h, 0)
            out.append((1.0, h_off, w_off))
            h, w = max(h, rh + h_off), max(w, rw + w_off)
    return out


def _run_double(block: nn.Module, args: dict[str, Any]) -> dict[str, Any]:
    img, txt = block(args["img"], args["txt"], args["vec"], args["pe"])
    return {"img": img, "txt": txt}


def _run_single(block: nn.Module, args: dict[str, Any]) -> dict[str, Any]:
    return {"img": block(args["img"], args["vec"], args["pe"])}


class Flux(nn.Module):
    """forward(x [B, C, H, W], timestep [B] (sigma), context [B, T, ctx], y [B, vec_in_dim (+1 guidance)]).

    ``y`` carries the CLIP-L pooled vector and, in one extra column, the distilled guidance (NaN = none),
    the way the UNet's ``y`` carries SDXL's ADM vector (engine.adm).
    """

    def __init__(self, config: FluxConfig, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        c = self.config = config
        if sum(c.axes_dim) != c.hidden_size // c.num_heads:
            raise ValueError(f"Flux: axes_dim {c.axes_dim} must sum to the head width {c.hidden_size // c.num_heads}")
        kw: dict[str, Any] = {"dtype": dtype, "device": device, "operations": operations}
        self.img_in = operations.Linear(c.in_channels * c.patch_size ** 2, c.hidden_size, bias=True, dtype=dtype,
                                        device=device)
        self.time_in = MLPEmbedder(256, c.hidden_size, **kw)
        self.vector_in = MLPEmbedder(c.vec_in_dim, c.hidden_size, **kw)
        if c.guidance_embed:
            self.guidance_in = MLPEmbedder(256, c.hidden_size, **kw)
        self.txt_in = operations.Linear(c.context_dim, c.hidden_size, dtype=dtype, device=device)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.qkv_bias, **kw)
                                           for _ in range(c.depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(c.hidden_size, c.num_heads, c.mlp_ratio, **kw)
                                           for _ in range(c.depth_single_blocks))
        self.final_layer = LastLayer(c.hidden_size, 1, c.in_channels * c.patch_size ** 2, **kw)

    def _pe(self, ids: torch.Tensor) -> torch.Tensor:
        c = self.config
        return torch.cat([rope(ids[..., i], c.axes_dim[i], c.theta) for i in range(ids.shape[-1])],
                         dim=-3).unsqueeze(1)

    def _tokens(self, x: torch.Tensor, index: float = 0.0, h_offset: int = 0, w_offset: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent [B, C, H, W] -> 2x2-patch tokens [B, hl*wl, C*p*p] and their (index, row, column) ids [B, hl*wl, 3];
        the offsets are in latent pixels, turned into patches as ComfyUI's ``process_img`` rounds them."""
        bs, _, h, w = x.shape
        p = self.config.patch_size
        pad_h, pad_w = (-h) % p, (-w) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="circular")
        hl, wl = (h + p - 1) // p, (w + p - 1) // p
        tokens = x.reshape(bs, x.shape[1], hl, p, wl, p).permute(0, 2, 4, 1, 3, 5).reshape(bs, hl * wl, -1)
        h0, w0 = (h_offset + p // 2) // p, (w_offset + p // 2) // p
        ids = torch.zeros(hl, wl, 3, device=x.device, dtype=torch.float32)
        ids[..., 0] = index
        ids[..., 1] = torch.linspace(h0, hl - 1 + h0, steps=hl, device=x.device)[:, None]
        ids[..., 2] = torch.linspace(w0, wl - 1 + w0, steps=wl, device=x.device)[None, :]
        return tokens, ids.reshape(1, hl * wl, 3).expand(bs, -1, -1)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, transformer_options: dict[str, Any] | None = None,
                ref_latents: list[torch.Tensor] | None = None, ref_latents_method: str | None = None,
                **unused: Any) -> torch.Tensor:
        """``transformer_options["patches_replace"]["dit"]`` replaces ("double_block", i) / ("single_block", i).

        ``ref_latents`` (Flux Kontext's reference images, in model space) are appended to the image tokens with the
        positions ``reference_placements`` gives for ``ref_latents_method`` (default "offset"); their outputs are
        dropped, so the result has the shape of ``x``."""
        c = self.config
        if context is None or y is None:
            raise ValueError("Flux needs a text context (T5) and a pooled vector (CLIP-L)")
        bs, _, h, w = x.shape
        p = c.patch_size
        hl, wl = (h + p - 1) // p, (w + p - 1) // p
        img, img_ids = self._tokens(x)
        n_img = img.shape[1]
        if ref_latents:
            places = reference_placements(hl, wl, p, [tuple(r.shape[-2:]) for r in ref_latents],
                                          ref_latents_method or "offset")
            parts, part_ids = [img], [img_ids]
            for ref, (index, h_off, w_off) in zip(ref_latents, places, strict=True):
                if ref.shape[0] != bs or ref.shape[1] != x.shape[1]:
                    raise ValueError(f"Flux: a reference latent {tuple(ref.shape)} must have the batch and channels "
                                     f"of x {tuple(x.shape)}")
                tokens, ids = self._tokens(ref.to(x), index, h_off, w_off)
                parts.append(tokens)
                part_ids.append(ids)
            img, img_ids = torch.cat(parts, dim=1), torch.cat(part_ids, dim=1)
        txt_ids = torch.zeros(bs, context.shape[1], 3, device=x.device, dtype=torch.float32)

        img = self.img_in(img)
        vec = self.time_in(flux_timestep_embedding(timestep, 256).to(img.dtype))
        pooled, guidance = y[:, :c.vec_in_dim], (y[:, c.vec_in_dim] if y.shape[1] > c.vec_in_dim else None)
        if c.guidance_embed and guidance is not None and not bool(torch.isnan(guidance).any()):
            vec = vec + self.guidance_in(flux_timestep_embedding(guidance, 256).to(img.dtype))
        vec = vec + self.vector_in(pooled.to(img.dtype))
        txt = self.txt_in(context.to(img.dtype))
        pe = self._pe(torch.cat((txt_ids, img_ids), dim=1))
        options = transformer_options or {}
        replace = (options.get("patches_replace") or {}).get("dit", {})
        for i, block in enumerate(self.double_blocks):
            patch = replace.get(("double_block", i))
            if patch is None:
                img, txt = block(img, txt, vec, pe)
            else:  # ComfyUI's block replacement: args img / txt / vec / pe, the block as "original_block"
                out = patch({"img": img, "txt": txt, "vec": vec, "pe": pe, "attn_mask": None,
                             "transformer_options": options}, {"original_block": partial(_run_double, block)})
                img, txt = out["img"], out["txt"]
        joint = torch.cat((txt, img), 1)
        for i, sblock in enumerate(self.single_blocks):
            patch = replace.get(("single_block", i))
            if patch is None:
                joint = sblock(joint, vec, pe)
            else:
                joint = patch({"img": joint, "vec": vec, "pe": pe, "attn_mask": None, "transformer_options": options},
                              {"original_block": partial(_run_single, sblock)})["img"]
        img = self.final_layer(joint[:, txt.shape[1]:txt.shape[1] + n_img], vec)
        out = img.reshape(bs, hl, wl, c.in_channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(bs, c.in_channels, hl * p, wl * p)[:, :, :h, :w]
