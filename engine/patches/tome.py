"""Token merging for Stable Diffusion (Bolya & Hoffman 2023, "Token Merging for Fast Stable Diffusion"), as
ComfyUI's TomePatchModel applies it: at the UNet's full-resolution level, the ``ratio`` share of self-attention
queries most similar to another token is merged away before attn1 and copied back after it.

Bipartite soft matching: the tokens are split into destinations (one per 2x2 cell, its position drawn at
random) and sources (the rest); each source's best destination is found by cosine similarity, the ``r`` sources
with the highest similarity are averaged into their destinations, the others stay. Unmerging gives each merged
source its destination's output. As in ComfyUI, the metric is the attention's input ``n`` and only the
queries are merged (keys and values keep every token).

Order: ComfyUI splits the tokens with an unstable argsort, so its merged rows can come in another order than
these (ascending token order); the set of rows is the same and, the attention treating queries independently,
so is the output after unmerging (checked against ComfyUI 0.3.64's function with fixed destinations: merged rows
a permutation, attention + unmerge equal to 1e-6).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from engine.patches.options import call_generator

__all__ = ["dst_partition", "TokenMerge", "TomePatch"]


def dst_partition(h: int, w: int, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(destination, source) token indices of an h x w grid, row-major; ``picks`` [h // 2, w // 2] holds, per 2x2
    cell, which of its 4 positions (row-major in the cell) is the destination. Tokens outside the whole cells
    are sources. Both lists are in ascending token order."""
    is_dst = torch.zeros(h, w, dtype=torch.bool)
    ch, cw = h // 2, w // 2
    rows = torch.arange(ch)[:, None] * 2 + picks // 2
    cols = torch.arange(cw)[None, :] * 2 + picks % 2
    is_dst[rows, cols] = True
    flat = is_dst.reshape(-1)
    return flat.nonzero().reshape(-1), (~flat).nonzero().reshape(-1)


class TokenMerge:
    """Merge / unmerge functions for one metric [B, N, C] on an h x w token grid, ``r`` tokens removed."""

    def __init__(self, metric: torch.Tensor, h: int, w: int, r: int, picks: torch.Tensor) -> None:
        dst, src = dst_partition(h, w, picks)
        self.n = metric.shape[1]
        self.dst = dst.to(metric.device)
        self.src = src.to(metric.device)
        unit = metric / metric.norm(dim=-1, keepdim=True)
        scores = unit[:, self.src] @ unit[:, self.dst].transpose(-1, -2)  # [B, sources, destinations]
        self.r = min(len(src), r)
        best, best_dst = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
        self.kept = order[:, self.r:]  # positions in the source list
        self.merged = order[:, :self.r]
        self.merged_dst = best_dst.gather(1, self.merged)  # positions in the destination list

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N - r, C]: kept sources, then destinations averaged with the sources merged into them."""
        c = x.shape[-1]
        src, dst = x[:, self.src], x[:, self.dst]
        kept = src.gather(1, self.kept[..., None].expand(-1, -1, c))
        moved = src.gather(1, self.merged[..., None].expand(-1, -1, c))
        dst = dst.scatter_reduce(1, self.merged_dst[..., None].expand(-1, -1, c), moved, reduce="mean")
        return torch.cat([kept, dst], dim=1)

    def unmerge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N - r, C] -> [B, N, C]: each merged source takes its destination's row."""
        b, c = x.shape[0], x.shape[-1]
        n_kept = self.kept.shape[1]
        kept, dst = x[:, :n_kept], x[:, n_kept:]
        out = torch.zeros(b, self.n, c, device=x.device, dtype=x.dtype)
        out[:, self.dst] = dst
        expand = (-1, -1, c)
        out.scatter_(1, self.src[self.kept][..., None].expand(*expand), kept)
        out.scatter_(1, self.src[self.merged][..., None].expand(*expand),
                     dst.gather(1, self.merged_dst[..., None].expand(*expand)))
        return out


class TomePatch:
    """``merge_in`` is an ``attn1_patch``, ``unmerge_out`` the matching ``attn1_output_patch``.

    Parameters: ratio: share of the top level's tokens merged away (0 = off).
    """

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self._merge: TokenMerge | None = None

    def merge_in(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 extra_options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._merge = None
        _, _, height, width = extra_options["original_shape"]
        downsample = int(math.ceil(math.sqrt((height * width) // q.shape[1])))
        if downsample > 1:
            return q, k, v
        h, w = int(math.ceil(height / downsample)), int(math.ceil(width / downsample))
        r = int(q.shape[1] * self.ratio)
        if r <= 0 or w == 1 or h == 1:
            return q, k, v
        gen = call_generator(extra_options, "tome")
        picks = torch.randint(4, (h // 2, w // 2), generator=gen)
        self._merge = TokenMerge(q, h, w, r, picks)
        return self._merge.merge(q), k, v

    def unmerge_out(self, n: torch.Tensor, extra_options: dict[str, Any]) -> torch.Tensor:
        merge, self._merge = self._merge, None
        return n if merge is None else merge.unmerge(n)
