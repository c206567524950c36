"""HyperTile (tfernd/HyperTile), as ComfyUI's HyperTile node applies it: at the UNet levels whose token count is
the latent's (up to ``max_depth`` halvings), the self-attention queries are split into a grid of tiles that
become batch rows; the output is reassembled after attn1.

Kept from ComfyUI on purpose, since it decides the numbers:
* only the queries are tiled; the keys and values keep their rows, so the attention reshapes them to the
  query batch and each tile attends to one contiguous run of ``hw / tiles`` tokens;
* the grid sides come from ``h = round(sqrt(hw * W / H))`` and ``w = round(sqrt(hw * H / W))``, i.e. the
  first side is the latent's width (the same as the usual reading on square latents);
* of the ``swap_size`` largest tile counts a random one is taken with ``randint(0, n - 1)`` (upper bound
  exclusive), so with two options the first is always taken.
Randomness comes from ``options.call_generator`` (per call), not torch's global generator.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from engine.patches.options import call_generator

__all__ = ["random_divisor", "HyperTilePatch"]


def random_divisor(value: int, min_value: int, max_options: int, generator: torch.Generator) -> int:
    """``value // d`` for one of the ``max_options`` smallest divisors ``d >= min(min_value, value)`` of value."""
    low = min(min_value, value)
    divisors = [d for d in range(low, value + 1) if value % d == 0]
    counts = [value // d for d in divisors[:max_options]]
    if len(counts) - 1 > 0:
        return counts[int(torch.randint(0, len(counts) - 1, (1,), generator=generator))]
    return counts[0]


class HyperTilePatch:
    """``tile_in`` is an ``attn1_patch``, ``tile_out`` the matching ``attn1_output_patch``.

    Parameters: tile_size: tile side in pixels (at least 32; latent side = tile_size // 8); swap_size: how
    many tile counts to choose among; max_depth: how many UNet levels below the top to tile too;
    scale_depth: double the tile side at each deeper level.
    """

    def __init__(self, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool) -> None:
        self.latent_tile = max(32, tile_size) // 8
        self.swap_size = swap_size
        self.max_depth = max_depth
        self.scale_depth = scale_depth
        self._grid: tuple[int, int, int, int] | None = None

    def tile_in(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                extra_options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = extra_options["original_shape"]
        tokens = q.shape[-2]
        levels = [(shape[-2] / 2**i) * (shape[-1] / 2**i) for i in range(self.max_depth + 1)]
        if tokens not in levels:
            return q, k, v
        aspect = shape[-1] / shape[-2]
        hw = q.shape[1]
        h, w = round(math.sqrt(hw * aspect)), round(math.sqrt(hw / aspect))
        factor = 2 ** levels.index(tokens) if self.scale_depth else 1
        gen = call_generator(extra_options, "hypertile")
        nh = random_divisor(h, self.latent_tile * factor, self.swap_size, gen)
        nw = random_divisor(w, self.latent_tile * factor, self.swap_size, gen)
        if nh * nw > 1:
            b, c = q.shape[0], q.shape[-1]
            th, tw = h // nh, w // nw
            # tokens (nh, th, nw, tw) -> rows (b, nh, nw), tokens (th, tw)
            q = q.reshape(b, nh, th, nw, tw, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, th * tw, c)
            self._grid = (nh, nw, h, w)
        return q, k, v

    def tile_out(self, out: torch.Tensor, extra_options: dict[str, Any]) -> torch.Tensor:
        if self._grid is None:
            return out
        nh, nw, h, w = self._grid
        self._grid = None
        th, tw, c = h // nh, w // nw, out.shape[-1]
        b = out.shape[0] // (nh * nw)
        return out.reshape(b, nh, nw, th, tw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * th * nw * tw, c)
