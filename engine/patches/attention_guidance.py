"""Guidance from a degraded second prediction, as ComfyUI's PerturbedAttentionGuidance and SelfAttentionGuidance
nodes compute it; both are ``sampler_post_cfg_function``s that run the model once more per step.

* PAG (Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with Perturbed-Attention Guidance"): the positive
  prediction again with the middle block's self-attention replaced by the identity (its output is ``v``), then
  ``cfg + (cond - perturbed) * scale``.
* SAG (Hong et al. 2023, "Improving Sample Quality of Diffusion Models Using Self-Attention Guidance"): the
  negative pass records the middle block's first self-attention map; where a key token gathers more than
  ``threshold`` attention the negative x0 is Gaussian-blurred, re-noised, predicted again, and
  ``cfg + (blurred - prediction) * scale``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.networks.attention import attention
from engine.patches.options import with_patch_replace
from engine.sampling.guider import calc_cond_batch

__all__ = ["identity_attention", "PerturbedAttentionGuidance", "attention_with_map", "gaussian_blur_2d",
           "blur_by_attention", "SelfAttentionGuidance"]


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra_options: dict[str, Any],
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """An attention replacement that returns the values unchanged (PAG's perturbation)."""
    return v


@dataclass(frozen=True)
class PerturbedAttentionGuidance:
    """``sampler_post_cfg_function``; scale 0 returns the CFG result untouched (no extra model call)."""

    scale: float

    def __call__(self, args: dict[str, Any]) -> torch.Tensor:
        cfg_result: torch.Tensor = args["denoised"]
        if self.scale == 0:
            return cfg_result
        options = with_patch_replace(args["model_options"], identity_attention, "attn1", "middle", 0)
        (perturbed,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"],
                                       model_options=options)
        cond_pred: torch.Tensor = args["cond_denoised"]
        return cfg_result + (cond_pred - perturbed) * self.scale


def attention_with_map(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention on [B, T, heads*d] tensors; returns the output and the map [B*heads, Tq, Tk]."""
    b, _, inner = q.shape
    d = inner // heads
    q, k, v = (t.reshape(b, -1, heads, d).permute(0, 2, 1, 3).reshape(b * heads, -1, d) for t in (q, k, v))
    weights = ((q @ k.transpose(1, 2)) * d**-0.5).softmax(dim=-1)
    out = (weights.to(v.dtype) @ v).reshape(b, heads, -1, d).permute(0, 2, 1, 3).reshape(b, -1, inner)
    return out, weights


def gaussian_blur_2d(img: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable-kernel Gaussian blur of [B, C, H, W] (one 2-D kernel per channel, reflect padding)."""
    half = (kernel_size - 1) * 0.5
    pdf = torch.exp(-0.5 * (torch.linspace(-half, half, steps=kernel_size) / sigma).pow(2))
    k1 = (pdf / pdf.sum()).to(device=img.device, dtype=img.dtype)
    kernel = (k1[:, None] @ k1[None, :]).expand(img.shape[-3], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(img, [pad, pad, pad, pad], mode="reflect"), kernel, groups=img.shape[-3])


def _map_grid(total: int, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of a ``total``-token map of a height x width latent (ComfyUI's divisor search; below 4
    tokens, where ComfyUI's search has no steps and fails, the first guess is taken when it divides)."""
    guess = round(math.sqrt((height / width) * total))
    for i in range(math.floor(math.sqrt(total) / 2)):
        for rows in (guess + i, max(1, guess - i)):
            if total % rows == 0:
                return rows, total // rows
    if guess >= 1 and total % guess == 0:
        return guess, total // guess
    raise ValueError(f"SelfAttentionGuidance: cannot lay the middle block's {total} attention tokens out as a "
                     f"grid for a {height}x{width} latent; use a larger latent")


def blur_by_attention(x0: torch.Tensor, attn: torch.Tensor, sigma: float, threshold: float = 1.0) -> torch.Tensor:
    """x0 blurred where the head-averaged attention map gives a key token more than ``threshold`` in total."""
    b, _, lh, lw = x0.shape
    hw1, hw2 = attn.shape[1:]
    mask = attn.reshape(b, -1, hw1, hw2).mean(1).sum(1) > threshold
    rows, cols = _map_grid(mask.shape[-1], lh, lw)
    mask = F.interpolate(mask.reshape(b, rows, cols).unsqueeze(1).to(attn.dtype), (lh, lw))
    blurred = gaussian_blur_2d(x0, kernel_size=9, sigma=sigma)
    return blurred * mask + x0 * (1 - mask)


class SelfAttentionGuidance:
    """``record`` replaces attn1 of the middle block's first transformer; ``post_cfg`` is the post-CFG function.

    Parameters: scale: guidance strength; blur_sigma: the Gaussian's sigma in latent pixels.
    The map is kept from the last call that evaluated the negative side (as ComfyUI, one map per model call).
    """

    def __init__(self, scale: float, blur_sigma: float) -> None:
        self.scale = scale
        self.blur_sigma = blur_sigma
        self.uncond_attn: torch.Tensor | None = None

    def record(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               extra_options: dict[str, Any]) -> torch.Tensor:
        heads: int = extra_options["n_heads"]
        sides: list[int] = extra_options["cond_or_uncond"]
        if 1 not in sides:
            return attention(q, k, v, heads)
        out, weights = attention_with_map(q, k, v, heads)
        rows = heads * (q.shape[0] // len(sides))
        at = sides.index(1)
        self.uncond_attn = weights[rows * at:rows * (at + 1)]
        return out

    def post_cfg(self, args: dict[str, Any]) -> torch.Tensor:
        cfg_result: torch.Tensor = args["denoised"]
        if min(cfg_result.shape[2:]) <= 4 or self.uncond_attn is None:  # too small for the blur's padding
            return cfg_result
        uncond_pred: torch.Tensor = args["uncond_denoised"]
        x: torch.Tensor = args["input"]
        degraded = blur_by_attention(uncond_pred, self.uncond_attn, self.blur_sigma)
        (pred,) = calc_cond_batch(args["model"], [args["uncond"]], degraded + x - uncond_pred, args["sigma"],
                                  model_options=args["model_options"])
        return cfg_result + (degraded - pred) * self.scale
