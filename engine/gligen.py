# mypy: disable-error-code="no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely)
"""GLIGEN (Li et al. 2023, "GLIGEN: Open-Set Grounded Text-to-Image Generation"), text-box grounding for SD1.x.

A GLIGEN file holds one gated self-attention ``fuser`` per UNet transformer (keys ``<block>.1.transformer_blocks.0
.fuser.*``, in UNet order: input, middle, output blocks) and a ``position_net`` that embeds up to 30 (phrase
embedding, box) pairs into grounding tokens. As in ComfyUI (``comfy/gligen.py``), a conditioning entry carries
``gligen = ("position", model, [(pooled, h, w, y, x), ...])`` (latent units); each model call builds the tokens for
the call's latent size and runs the fuser of the current transformer (``transformer_index``) as a ``middle_patch``
(after attn1, ``engine.networks.attention``): ``x += tanh(alpha_attn) * attn(norm1([x, tokens]))[:, :len(x)]``,
then ``x += tanh(alpha_dense) * ff(norm2(x))``.

Heads cannot be read from shapes: SD1.x fusers use 8 heads. ComfyUI recognises SD1 by a 768-wide phrase embedding
and otherwise uses 64-channel heads; here 64-channel heads are used only where every fuser's width is a multiple
of 64 and the phrase width is not 768, else 8 heads (so small test models with SD1's layout work).
"""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.model_management import ModelManager, file_cache_key
from engine.networks.attention import CrossAttention, FeedForward

__all__ = ["GatedSelfAttentionDense", "PositionNet", "Gligen", "gligen_from_state_dict", "gligen_middle_patch",
           "share_gligen", "load_gligen", "MAX_OBJS", "FOURIER_FREQS"]

MAX_OBJS = 30
FOURIER_FREQS = 8
SD1_PHRASE_WIDTH = 768
_FUSER = re.compile(r"(?:^|\.)(input_blocks|middle_block|output_blocks)\.(\d+)\..*?\.fuser\.(.+)$")
_BLOCK_ORDER = {"input_blocks": 0, "middle_block": 1, "output_blocks": 2}


class GatedSelfAttentionDense(nn.Module):
    """One fuser: visual tokens attend over themselves plus the grounding tokens, gated by tanh(alpha).

    Parameters: query_dim: width of the transformer's tokens; context_dim: width of the grounding tokens;
    heads, dim_head: attention shape.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, query_dim)
        self.attn = CrossAttention(query_dim, query_dim, heads, dim_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        n_visual = x.shape[1]
        objs = self.linear(objs)
        x = x + torch.tanh(self.alpha_attn) * self.attn(self.norm1(torch.cat([x, objs], dim=1)))[:, :n_visual]
        return x + torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


def fourier_embed(x: torch.Tensor, freqs: int = FOURIER_FREQS, temperature: float = 100.0) -> torch.Tensor:
    """[..., 4] boxes -> [..., 8 * freqs]: sin and cos of each coordinate at ``temperature ** (k / freqs)``."""
    bands = temperature ** (torch.arange(freqs) / freqs)
    out = []
    for f in bands:
        out.append(torch.sin(f * x))
        out.append(torch.cos(f * x))
    return torch.cat(out, dim=-1)


class PositionNet(nn.Module):
    """Grounding tokens from (phrase embedding, box) pairs; padding slots take the learned null features.

    Parameters: in_dim: phrase embedding width; out_dim: token width.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.position_dim = FOURIER_FREQS * 2 * 4
        self.linears = nn.Sequential(nn.Linear(in_dim + self.position_dim, hidden), nn.SiLU(),
                                     nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))
        self.null_positive_feature = nn.Parameter(torch.zeros([in_dim]))
        self.null_position_feature = nn.Parameter(torch.zeros([self.position_dim]))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        masks = masks.unsqueeze(-1)
        xyxy = fourier_embed(boxes)
        null_phrase = self.null_positive_feature.to(boxes).view(1, 1, -1)
        null_xyxy = self.null_position_feature.to(boxes).view(1, 1, -1)
        phrases = phrases * masks + (1 - masks) * null_phrase
        xyxy = xyxy * masks + (1 - masks) * null_xyxy
        return self.linears(torch.cat([phrases, xyxy], dim=-1))


def _placed(module: nn.Module, like: torch.Tensor) -> nn.Module:
    p = next(module.parameters())
    if p.device == like.device and p.dtype == like.dtype:
        return module
    return copy.deepcopy(module).to(like.device, like.dtype)


class Gligen(nn.Module):
    """The GLIGEN value: fusers in UNet transformer order, the position net and the phrase width."""

    def __init__(self, fusers: Sequence[GatedSelfAttentionDense], position_net: PositionNet, key_dim: int) -> None:
        super().__init__()
        self.module_list = nn.ModuleList(fusers)
        self.position_net = position_net
        self.key_dim = key_dim
        self._placed: dict[tuple[int, torch.device, torch.dtype], nn.Module] = {}

    def fuser(self, index: int, like: torch.Tensor) -> nn.Module:
        """Fuser ``index`` on ``like``'s device and dtype (a cached copy when they differ from the stored ones)."""
        if not 0 <= index < len(self.module_list):
            raise ValueError(f"GLIGEN: the model has {len(self.module_list)} fusers but the UNet reached transformer "
                             f"{index}; this GLIGEN model does not fit the UNet it is used with")
        key = (index, like.device, like.dtype)
        if key not in self._placed:
            self._placed[key] = _placed(self.module_list[index], like)
        return self._placed[key]

    def tokens(self, latent_shape: Sequence[int], params: Sequence[Sequence[Any]] | None,
               device: torch.device) -> torch.Tensor:
        """Grounding tokens [batch, 30, width] for a latent of ``latent_shape`` (``params`` None: no boxes)."""
        batch, h, w = int(latent_shape[0]), int(latent_shape[-2]), int(latent_shape[-1])
        params = list(params or [])
        if len(params) > MAX_OBJS:
            raise ValueError(f"GLIGEN: {len(params)} text boxes on one conditioning; at most {MAX_OBJS} are supported")
        masks = torch.zeros([MAX_OBJS])
        boxes = torch.zeros([MAX_OBJS, 4])
        phrases = torch.zeros([MAX_OBJS, self.key_dim])
        for i, p in enumerate(params):
            pooled, bh, bw, by, bx = p[0], p[1], p[2], p[3], p[4]
            emb = torch.as_tensor(pooled, dtype=torch.float32).reshape(-1)
            if emb.shape[0] != self.key_dim:
                raise ValueError(f"GLIGEN: box {i} has a {emb.shape[0]}-wide text embedding; this GLIGEN model "
                                 f"expects {self.key_dim} (use the CLIP of its base model)")
            masks[i] = 1.0
            boxes[i] = torch.tensor((bx / w, by / h, (bx + bw) / w, (by + bh) / h))
            phrases[i] = emb
        pn = _placed(self.position_net, torch.empty(0, device=device))
        rep = (batch, 1, 1)
        return pn(boxes.to(device).repeat(rep), masks.to(device).repeat(batch, 1), phrases.to(device).repeat(rep))


class _MiddlePatch:
    """``middle_patch`` of one model call: the current transformer's fuser over the call's grounding tokens."""

    def __init__(self, gligen: Gligen, objs: torch.Tensor) -> None:
        self.gligen = gligen
        self.objs = objs

    def __call__(self, x: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
        return self.gligen.fuser(int(extra["transformer_index"]), x)(x, self.objs.to(device=x.device, dtype=x.dtype))


def gligen_middle_patch(entry: Any, latent_shape: Sequence[int], device: torch.device) -> _MiddlePatch:
    """The patch for a conditioning's ``gligen`` value (``("position", Gligen, params)``; other kinds: no boxes)."""
    if not isinstance(entry, (tuple, list)) or len(entry) < 2 or not isinstance(entry[1], Gligen):
        raise TypeError("conditioning 'gligen' must be (kind, GLIGEN, params) from GLIGENTextBoxApply, got "
                        f"{type(entry).__name__}")
    kind, model = entry[0], entry[1]
    params = entry[2] if kind == "position" and len(entry) > 2 else None
    with torch.no_grad():
        return _MiddlePatch(model, model.tokens(latent_shape, params, device))


def share_gligen(positive: list[Any], negative: list[Any]) -> None:
    """ComfyUI's apply_empty_x_to_equal_area for ``gligen``: when no negative entry has one, the negative entries
    without an area take the positive full-frame entries' (in turn; the last one wins on a shared entry)."""
    found = [c.extra["gligen"] for c in positive if "area" not in c.extra and c.extra.get("gligen") is not None]
    free = [c for c in negative if "area" not in c.extra]
    if not found or not free or any(c.extra.get("gligen") is not None for c in free):
        return
    for k, g in enumerate(found):
        c = free[k % len(free)]
        c.extra = {**c.extra, "gligen": g}


def _heads(query_dims: Sequence[int], key_dim: int) -> list[tuple[int, int]]:
    if key_dim != SD1_PHRASE_WIDTH and all(q % 64 == 0 for q in query_dims):
        return [(q // 64, 64) for q in query_dims]
    return [(8, q // 8) for q in query_dims]


def gligen_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "gligen") -> Gligen:
    """Build a Gligen from a GLIGEN file's tensors (float32, whatever the file's dtype)."""
    groups: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for key, t in sd.items():
        m = _FUSER.search(key)
        if m is not None:
            groups.setdefault((_BLOCK_ORDER[m.group(1)], int(m.group(2))), {})[m.group(3)] = t
    if not groups or "position_net.null_positive_feature" not in sd:
        raise CheckpointError(f"{source}: not a GLIGEN model (expected '*.fuser.*' and 'position_net.*' keys); "
                              f"found {len(sd)} tensors such as {sorted(sd)[:3]}")
    ordered = [groups[k] for k in sorted(groups)]
    try:
        query_dims = [int(g["linear.weight"].shape[0]) for g in ordered]
        key_dim = int(ordered[0]["linear.weight"].shape[1])
    except KeyError as exc:
        raise CheckpointError(f"{source}: a fuser lacks {exc}") from exc
    fusers = []
    for g, q, (heads, dim_head) in zip(ordered, query_dims, _heads(query_dims, key_dim), strict=True):
        fuser = GatedSelfAttentionDense(q, key_dim, heads, dim_head)
        _load(fuser, g, source)
        fusers.append(fuser)
    pn_sd = {k[len("position_net."):]: v for k, v in sd.items() if k.startswith("position_net.")}
    in_dim = int(pn_sd["null_positive_feature"].shape[0])
    out_dim = int(pn_sd["linears.4.weight"].shape[0])
    hidden = int(pn_sd["linears.0.weight"].shape[0])
    position_net = PositionNet(in_dim, out_dim, hidden)
    _load(position_net, pn_sd, source)
    return Gligen(fusers, position_net, in_dim).eval().requires_grad_(False)


def _load(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    shapes = {k: v.shape for k, v in module.state_dict().items()}
    missing = sorted(set(shapes) - set(sd))
    if missing:
        raise CheckpointError(f"{source}: GLIGEN tensors missing: {missing[:4]}")
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(s)})" for k, s in shapes.items() if sd[k].numel() != s.numel()]
    if wrong:
        raise CheckpointError(f"{source}: GLIGEN tensors do not fit the layout: {wrong[:3]}")
    # 0-dim gates may be stored as [1]
    module.load_state_dict({k: sd[k].float().reshape(s) for k, s in shapes.items()})


def load_gligen(path: str | os.PathLike[str], manager: ModelManager) -> Gligen:
    """A GLIGEN file as a Gligen (cached by path and mtime; float32 whatever the file's dtype, as ComfyUI on CPU)."""
    from engine.state_files import read_state_dict

    p = Path(path)

    def build() -> Gligen:
        return gligen_from_state_dict(read_state_dict(p)[0], p.name)

    return manager.cached(file_cache_key("gligen", p), build)
