"""Guidance patches built on the sampler's ``model_options`` hooks (see ``engine.sampling.guider``): each is
a ``sampler_pre_cfg_function`` (``args -> [cond_x0, uncond_x0, ...]``), ``sampler_cfg_function``
(``args -> input - guided_x0``) or ``sampler_post_cfg_function`` (``args -> x0``), as ComfyUI installs it.

- CFG-Zero* (Fan et al. 2025, arXiv:2503.18886): rescale the unconditional prediction by the optimised
  scale s* = <v_cond, v_uncond> / |v_uncond|^2 of the noise predictions.
- APG (Sadat et al. 2024, "Eliminating Oversaturation and Artifacts of High Guidance Scales in Diffusion
  Models", arXiv:2410.02416): momentum, norm threshold, parallel component scaled by eta.
- TCFG (Kwon et al. 2025, "Tangential Damping Classifier-free Guidance", arXiv:2503.18137): the negative
  score projected on the first right-singular vector of [uncond; cond].
- Mahiro (ComfyUI): blend CFG with the plain positive leap by the cosine similarity of sqrt-compressed leaps.
- RenormCFG (Lumina-Image 2.0): CFG up to ``cfg_trunc``, its norm capped at renorm_cfg x the positive's.
- CFGNorm: cap the guided prediction's channel norm at the positive's (times strength).
- Perp-Neg (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm", arXiv:2304.04968): only the
  part of the negative direction perpendicular to the positive one is removed.
- Epsilon Scaling (Ning et al. 2023, "Elucidating the Exposure Bias in Diffusion Models",
  arXiv:2308.15321): the predicted noise divided by a constant factor (uniform schedule).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Args = dict[str, Any]

__all__ = ["ApgPreCfg", "cfg_norm", "cfg_zero_star", "epsilon_scaling", "mahiro", "perp_neg", "renorm_cfg",
           "tangential_damping_cfg"]


def _optimized_scale(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Per-sample <positive, negative> / (|negative|^2 + 1e-8), shaped to broadcast over positive."""
    p = positive.reshape(positive.shape[0], -1)
    n = negative.reshape(negative.shape[0], -1)
    scale = torch.sum(p * n, dim=1, keepdim=True) / (torch.sum(n**2, dim=1, keepdim=True) + 1e-8)
    return scale.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


def cfg_zero_star(args: Args) -> torch.Tensor:
    """CFG-Zero*'s post-CFG function: denoised + uncond (alpha - 1) + scale uncond (1 - alpha)."""
    x, cond, uncond = args["input"], args["cond_denoised"], args["uncond_denoised"]
    alpha = _optimized_scale(x - cond, x - uncond)
    out: torch.Tensor = args["denoised"] + uncond * (alpha - 1.0) + args["cond_scale"] * uncond * (1.0 - alpha)
    return out


def cfg_norm(args: Args, strength: float) -> torch.Tensor:
    """CFGNorm's post-CFG function: guided x0 scaled by min(1, |cond| / |guided|) over channels, times strength."""
    cond, guided = args["cond_denoised"], args["denoised"]
    scale = (torch.norm(cond, dim=1, keepdim=True) / (torch.norm(guided, dim=1, keepdim=True) + 1e-8)).clamp(0.0, 1.0)
    out: torch.Tensor = guided * scale * strength
    return out


def mahiro(args: Args) -> torch.Tensor:
    """Mahiro's post-CFG function: weight CFG against the positive leap by the leaps' signed-sqrt similarity."""
    scale: float = args["cond_scale"]
    leap = args["cond_denoised"] * scale
    u_leap = args["uncond_denoised"] * scale
    guided: torch.Tensor = args["denoised"]
    merge = (leap + guided) / 2
    norm_u = torch.sqrt(u_leap.abs()) * u_leap.sign()
    norm_m = torch.sqrt(merge.abs()) * merge.sign()
    sim = F.cosine_similarity(norm_u, norm_m).mean()
    weight = 2 * (sim + 1)
    out: torch.Tensor = (weight * guided + (4 - weight) * leap) / 4
    return out


def _tangential_damping(cond_score: torch.Tensor, uncond_score: torch.Tensor) -> torch.Tensor:
    batch = cond_score.shape[0]
    cond_flat = cond_score.reshape(batch, 1, -1).float()
    uncond_flat = uncond_score.reshape(batch, 1, -1).float()
    _, _, vh = torch.linalg.svd(torch.cat((uncond_flat, cond_flat), dim=1), full_matrices=False)
    v1 = vh[:, 0:1, :]
    damped = (uncond_flat @ v1.transpose(-2, -1)) * v1
    out: torch.Tensor = damped.reshape_as(uncond_score).to(uncond_score.dtype)
    return out


def tangential_damping_cfg(args: Args) -> list[torch.Tensor]:
    """TCFG's pre-CFG function: the negative prediction with its tangential score component dropped."""
    out: list[torch.Tensor] = args["conds_out"]
    if len(out) <= 1 or any(c is None for c in args["conds"][:2]):
        return out
    x, cond, uncond = args["input"], out[0], out[1]
    damped = _tangential_damping(x - cond, x - uncond)
    return [cond, x - damped, *out[2:]]


class ApgPreCfg:
    """APG's pre-CFG function; holds the guidance momentum, reset when sigma rises (a new run)."""

    def __init__(self, eta: float, norm_threshold: float, momentum: float) -> None:
        self.eta = eta
        self.norm_threshold = norm_threshold
        self.momentum = momentum
        self.running: torch.Tensor | None = None
        self.prev_sigma: torch.Tensor | None = None

    def __call__(self, args: Args) -> list[torch.Tensor]:
        """[modified cond, uncond, ...]: CFG then gives uncond + projected guidance * scale."""
        out: list[torch.Tensor] = args["conds_out"]
        if len(out) == 1:
            return out
        cond, uncond = out[0], out[1]
        sigma = args["sigma"][0]
        scale = args["cond_scale"]
        if self.prev_sigma is not None and sigma > self.prev_sigma:
            self.running = None
        self.prev_sigma = sigma
        guidance = cond - uncond
        if self.momentum != 0:
            self.running = guidance if self.running is None else self.momentum * self.running + guidance
            guidance = self.running
        if self.norm_threshold > 0:
            norm = guidance.norm(p=2, dim=[-1, -2, -3], keepdim=True)
            guidance = guidance * torch.minimum(torch.ones_like(norm), self.norm_threshold / norm)
        direction = F.normalize(cond, dim=[-1, -2, -3])  # type: ignore[arg-type]  # torch accepts a dim list
        parallel = (guidance * direction).sum(dim=[-1, -2, -3], keepdim=True) * direction
        modified = (guidance - parallel) + self.eta * parallel
        return [(uncond + modified) + (cond - uncond) / scale, uncond, *out[2:]]


def epsilon_scaling(args: Args, factor: float) -> torch.Tensor:
    """Epsilon Scaling's post-CFG function: x - (x - x0) / factor."""
    x: torch.Tensor = args["input"]
    denoised: torch.Tensor = args["denoised"]
    return x - (x - denoised) / factor


def renorm_cfg(args: Args, cfg_trunc: float, renorm: float, in_channels: int) -> torch.Tensor:
    """RenormCFG's ``sampler_cfg_function``: CFG on the first ``in_channels`` channels while sigma < cfg_trunc,
    with the result's norm capped at renorm x the positive's; the positive prediction beyond cfg_trunc."""
    cond, uncond = args["cond_denoised"], args["uncond_denoised"]
    cond_eps, uncond_eps, rest = cond[:, :in_channels], uncond[:, :in_channels], cond[:, in_channels:]
    if args["timestep"][0] < cfg_trunc:
        half = uncond_eps + args["cond_scale"] * (cond_eps - uncond_eps)
        if renorm > 0.0:
            dims = tuple(range(1, cond_eps.ndim))
            max_norm = torch.linalg.vector_norm(cond_eps, dim=dims, keepdim=True) * renorm
            new_norm = torch.linalg.vector_norm(half, dim=dims, keepdim=True)
            # per sample (ComfyUI compares the whole batch at once, which only works for batch 1)
            half = torch.where(new_norm >= max_norm, half * (max_norm / new_norm), half)
    else:
        half = cond_eps
    out: torch.Tensor = args["input"] - torch.cat([half, rest], dim=1)
    return out


def perp_neg(pos: torch.Tensor, neg: torch.Tensor, empty: torch.Tensor, neg_scale: float,
             cond_scale: float) -> torch.Tensor:
    """Perp-Neg guided x0: empty + scale * (pos - empty - neg_scale * perp), perp = the part of
    (neg - empty) orthogonal to (pos - empty) over the whole batch."""
    p = pos - empty
    n = neg - empty
    perp = n - (torch.mul(n, p).sum() / (torch.norm(p) ** 2)) * p
    out: torch.Tensor = empty + cond_scale * (p - perp * neg_scale)
    return out
