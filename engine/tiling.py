"""Tiled apply: a function over overlapping tiles of a tensor, the results blended with linear feathering, so a
network's memory is bounded by the tile size (upscale models; ComfyUI's ``comfy.utils.tiled_scale`` /
``tiled_scale_multidim``, which packs call to decode or upscale images and video latents tile by tile).

Tiles follow ComfyUI's rule (``tile_positions``): stride ``tile - overlap`` along each axis, the last tile shorter
rather than shifted, one tile when it covers the axis; overlaps are feathered over the (scaled) overlap.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["tile_positions", "tiled_scale_multidim"]

Scale = float | Callable[[int], float]


def _per_dim(value: Any, dims: int) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value] * dims


def _apply(rule: Scale, value: int, downscale: bool) -> float:
    """A scale rule is a factor (multiplied, or divided when downscaling) or a function of the size / position."""
    if callable(rule):
        return rule(value)
    return value / rule if downscale else value * rule


def tile_positions(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) of the tiles along one axis (module docstring)."""
    if size <= tile:
        return [(0, size)]
    out = []
    for start in range(0, size - overlap, max(tile - overlap, 1)):
        pos = max(0, min(size - overlap, start))
        out.append((pos, min(tile, size - pos)))
    return out


def _feather_mask(shape: torch.Size, feathers: Sequence[int], device: Any) -> torch.Tensor:
    """Ones of ``shape`` ramping linearly ((t+1)/f) over ``feathers[d]`` entries at both ends of each tiled dim."""
    mask = torch.ones(shape, device=device)
    for d, feather in enumerate(feathers, start=2):
        size = shape[d]
        if feather >= size:
            continue
        ramp = torch.ones(size, device=device)
        steps = torch.arange(1, feather + 1, device=device, dtype=ramp.dtype) / max(feather, 1)
        ramp[:feather] *= steps
        ramp[size - feather:] *= steps.flip(0)
        view = [1] * len(shape)
        view[d] = size
        mask = mask * ramp.view(view)
    return mask


def tiled_scale_multidim(samples: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor],
                         tile: Sequence[int] = (64, 64), overlap: int | Sequence[int] = 8,
                         upscale_amount: Scale | Sequence[Scale] = 4, out_channels: int = 3,
                         output_device: Any = "cpu", downscale: bool = False,
                         index_formulas: Scale | Sequence[Scale] | None = None, pbar: Any = None) -> torch.Tensor:
    """Apply ``function`` to overlapping tiles of ``samples`` ([B, C, *dims], one tile size per trailing dim) and
    blend the results with linear feathering over the (scaled) overlap. ``upscale_amount`` maps input sizes to
    output sizes, ``index_formulas`` (default: the same) input positions to output positions; each is a factor
    per dim or a function, and with ``downscale`` factors divide. A batch item that fits one tile is passed
    whole. ``pbar.update(1)`` is called per tile."""
    dims = len(tile)
    scales = _per_dim(upscale_amount, dims)
    overlaps = _per_dim(overlap, dims)
    positions_rule = scales if index_formulas is None else _per_dim(index_formulas, dims)

    def out_size(sizes: Sequence[int]) -> list[int]:
        return [round(_apply(scales[d], sizes[d], downscale)) for d in range(dims)]

    spatial = list(samples.shape[2:])
    output = torch.empty([samples.shape[0], out_channels, *out_size(spatial)], device=output_device)
    feathers = [round(_apply(scales[d], overlaps[d], downscale)) for d in range(dims)]
    axes = [tile_positions(spatial[d], tile[d], overlaps[d]) for d in range(dims)]
    for b in range(samples.shape[0]):
        item = samples[b:b + 1]
        if all(len(a) == 1 for a in axes):
            output[b:b + 1] = function(item).to(output_device)
            if pbar is not None:
                pbar.update(1)
            continue
        acc = torch.zeros([1, out_channels, *out_size(spatial)], device=output_device)
        weight = torch.zeros_like(acc)
        for corner in itertools.product(*axes):
            piece = item
            offsets = []
            for d, (start, length) in enumerate(corner):
                piece = piece.narrow(d + 2, start, length)
                offsets.append(round(_apply(positions_rule[d], start, downscale)))
            result = function(piece).to(output_device)
            mask = _feather_mask(result.shape, feathers, output_device)
            acc_view, weight_view = acc, weight
            for d in range(dims):
                acc_view = acc_view.narrow(d + 2, offsets[d], result.shape[d + 2])
                weight_view = weight_view.narrow(d + 2, offsets[d], result.shape[d + 2])
            acc_view.add_(result * mask)
            weight_view.add_(mask)
            if pbar is not None:
                pbar.update(1)
        output[b:b + 1] = acc / weight
    return output
