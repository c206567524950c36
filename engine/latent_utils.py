"""Latent slicing / joining and ComfyUI's latent operations (LATENT_OPERATION callables).

A latent operation is a callable `op(latent=[B,C,H,W]) -> [B,C,H,W]`; LatentApplyOperation applies it to a
latent, LatentApplyOperationCFG to the guidance difference at every sampling step.
torch is imported inside the functions so that importing the node catalogue stays torch-free.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.image_ops import post_kernel, repeat_to_batch

if TYPE_CHECKING:
    import torch

__all__ = ["LatentOperation", "CUT_DIMS", "CONCAT_DIMS", "cut", "concat", "tonemap_reinhard", "sharpen",
           "cfg_pre_function"]

LatentOperation = Callable[..., "torch.Tensor"]

CUT_DIMS = ("x", "y", "t")
CONCAT_DIMS = ("x", "-x", "y", "-y", "t", "-t")


def _axis(dim: str, ndim: int) -> int:
    """x = last axis (width), y = the one before (height), t = the one before that (time, 5-D video latents)."""
    offset = {"x": 1, "y": 2, "t": 3}[dim.lstrip("-")]
    if offset > ndim - 1:
        raise ValueError(f"dim {dim!r} needs a latent with at least {offset + 1} dimensions, got {ndim}")
    return ndim - offset


def cut(samples: torch.Tensor, dim: str, index: int, amount: int) -> torch.Tensor:
    """`amount` slices from `index` along x / y / t; index and amount are clamped to the latent."""
    axis = _axis(dim, samples.ndim)
    size = samples.shape[axis]
    if index >= 0:
        index = min(index, size - 1)
        amount = min(size - index, amount)
    else:
        index = max(index, -size)
        amount = min(-index, amount)
    return samples.narrow(axis, index, amount)


def concat(samples1: torch.Tensor, samples2: torch.Tensor, dim: str) -> torch.Tensor:
    """samples1 then samples2 along x / y / t ("-" puts samples2 first); samples2's batch follows samples1's."""
    import torch
    samples2 = repeat_to_batch(samples2, samples1.shape[0])
    axis = -_axis_offset(dim)
    parts = (samples2, samples1) if dim.startswith("-") else (samples1, samples2)
    return torch.cat(parts, dim=axis)


def _axis_offset(dim: str) -> int:
    return {"x": 1, "y": 2, "t": 3}[dim.lstrip("-")]


def tonemap_reinhard(multiplier: float) -> LatentOperation:
    """Reinhard tone mapping of the per-pixel channel-vector magnitude, white point mean + 5 std (x multiplier)."""
    import torch

    def op(latent: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        magnitude = (torch.linalg.vector_norm(latent, dim=1) + 1e-10)[:, None]
        direction = latent / magnitude
        mean = torch.mean(magnitude, dim=(1, 2, 3), keepdim=True)
        std = torch.std(magnitude, dim=(1, 2, 3), keepdim=True)
        top = (std * 5 + mean) * multiplier
        scaled = magnitude * (1.0 / top)
        out: torch.Tensor = direction * (scaled / (scaled + 1.0) * top)
        return out

    return op


def sharpen(sharpen_radius: int, sigma: float, alpha: float) -> LatentOperation:
    """Unsharp mask on the channel-normalised latent (magnitude kept): centre 1 + k*sum, taps -10*alpha*Gaussian.

    Reflect padding by the radius, then a zero-padded convolution, then the radius trimmed (ComfyUI's order).
    """
    import torch
    import torch.nn.functional as F

    def op(latent: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        luminance = (torch.linalg.vector_norm(latent, dim=1) + 1e-6)[:, None]
        normalized = latent / luminance
        channels = latent.shape[1]
        size = sharpen_radius * 2 + 1
        kernel = post_kernel(size, sigma).to(latent) * (alpha * -10)
        centre = size // 2
        kernel[centre, centre] = kernel[centre, centre] - kernel.sum() + 1.0
        r = sharpen_radius
        padded = F.pad(normalized, (r, r, r, r), "reflect")
        weight = kernel.repeat(channels, 1, 1).unsqueeze(1)
        sharpened = F.conv2d(padded, weight, padding=size // 2, groups=channels)[:, :, r:-r, r:-r]
        out: torch.Tensor = luminance * sharpened
        return out

    return op


def cfg_pre_function(operation: LatentOperation) -> Callable[[dict[str, Any]], list[Any]]:
    """A `sampler_pre_cfg_function` applying `operation` to cond - uncond (or to cond alone without uncond)."""

    def pre_cfg(args: dict[str, Any]) -> list[Any]:
        out = list(args["conds_out"])
        if len(out) == 2 and out[1] is not None:
            out[0] = operation(latent=(out[0] - out[1])) + out[1]
        else:
            out[0] = operation(latent=out[0])
        return out

    return pre_cfg
