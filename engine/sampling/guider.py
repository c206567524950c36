"""Classifier-free guidance over resolved conds (Ho & Salimans 2022), batched like ComfyUI.

Every active entry of the positive and negative lists is evaluated on its area of x; entries with the
same input shape run in one model call (negative first, as ComfyUI orders them); predictions of one side
are averaged with their area / mask / strength weights, then ``uncond + (cond - uncond) * cfg``. At
cfg == 1 the negative side is not evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine.sampling.conditioning import Cond, repeat_to_batch_size

_FEATHER = 8  # area edges off the image border fade in over min(8, area size // 4) latent pixels


@dataclass
class _Job:
    x: torch.Tensor
    mult: torch.Tensor
    cond: Cond
    side: int  # 0 = positive, 1 = negative


def _crop(t: torch.Tensor, area: tuple[int, ...], first_dim: int) -> torch.Tensor:
    n = len(area) // 2
    for i in range(n):
        t = t.narrow(i + first_dim, area[n + i], area[i])
    return t


def _prepare(c: Cond, x: torch.Tensor, sigma: torch.Tensor, side: int) -> _Job | None:
    s = float(sigma[0])
    if c.sigma_start is not None and s > c.sigma_start:
        return None
    if c.sigma_end is not None and s < c.sigma_end:
        return None
    dims = tuple(x.shape[2:])
    area: tuple[int, ...] | None = None
    x_in = x
    if c.area is not None:
        a = list(c.area)
        n = len(dims)
        for i in range(n):
            a[i] = min(x.shape[i + 2] - a[n + i], a[i])
        area = tuple(a)
        x_in = _crop(x, area, 2)
    if c.mask is not None:
        m = c.mask[: x_in.shape[0]]
        if area is not None:
            m = _crop(m, area, 1)
        m = m * c.mask_strength
        mask = m.unsqueeze(1).repeat(x_in.shape[0] // m.shape[0], x_in.shape[1], 1, 1)
    else:
        mask = torch.ones_like(x_in)
    mult = mask * c.strength
    if c.mask is None and area is not None:
        n = len(dims)
        for i in range(n):
            rr = min(_FEATHER, mult.shape[2 + i] // 4)
            if area[n + i] != 0:
                for t in range(rr):
                    mult.narrow(i + 2, t, 1).mul_((1.0 / rr) * (t + 1))
            if area[i] + area[n + i] < x.shape[i + 2]:
                for t in range(rr):
                    mult.narrow(i + 2, area[i] - 1 - t, 1).mul_((1.0 / rr) * (t + 1))
    job_cond = c if area == c.area else Cond(**{**c.__dict__, "area": area})
    return _Job(x_in, mult, job_cond, side)


def _ctx_compatible(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        return False
    lcm = math.lcm(a.shape[1], b.shape[1])
    return lcm // min(a.shape[1], b.shape[1]) <= 4


def _batchable(a: _Job, b: _Job) -> bool:
    if a.x.shape != b.x.shape or not _ctx_compatible(a.cond.cross_attn, b.cond.cross_attn):
        return False
    for ta, tb in ((a.cond.y, b.cond.y), (a.cond.concat, b.cond.concat)):
        if (ta is None) != (tb is None) or (ta is not None and tb is not None and ta.shape != tb.shape):
            return False
    return True


def _cat_context(tensors: list[torch.Tensor]) -> torch.Tensor:
    lengths = [t.shape[1] for t in tensors]
    lcm = math.lcm(*lengths)
    return torch.cat([t.repeat(1, lcm // t.shape[1], 1) if t.shape[1] != lcm else t for t in tensors])


def _model_inputs(job: _Job, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    ctx = repeat_to_batch_size(job.cond.cross_attn, batch)
    y = repeat_to_batch_size(job.cond.y, batch) if job.cond.y is not None else None
    concat = job.cond.concat
    if concat is not None:
        if job.cond.area is not None:
            concat = _crop(concat, job.cond.area, 2)
        concat = repeat_to_batch_size(concat, batch)
    return ctx, y, concat


def calc_cond_batch(model: Any, sides: list[list[Cond] | None], x: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
    """Weighted x0 prediction of each side (a list of conds, or None to skip) at ``x``, ``sigma``."""
    out = [torch.zeros_like(x) for _ in sides]
    counts = [torch.ones_like(x) * 1e-37 for _ in sides]
    pending: list[_Job] = []
    for side, conds in enumerate(sides):
        for c in conds or []:
            job = _prepare(c, x, sigma, side)
            if job is not None:
                pending.append(job)
    while pending:
        first = pending[0]
        picks = [i for i, j in enumerate(pending) if _batchable(j, first)]
        picks.reverse()
        jobs = [pending.pop(i) for i in picks]
        batch = x.shape[0]
        inputs = [_model_inputs(j, batch) for j in jobs]
        ys = [i[1] for i in inputs]
        concats = [i[2] for i in inputs]
        pred: tuple[torch.Tensor, ...] = model.apply_model(
            torch.cat([j.x for j in jobs]),
            torch.cat([sigma] * len(jobs)),
            _cat_context([i[0] for i in inputs]),
            y=torch.cat([y for y in ys if y is not None]) if ys[0] is not None else None,
            concat=torch.cat([c for c in concats if c is not None]) if concats[0] is not None else None,
        ).chunk(len(jobs))
        for j, p in zip(jobs, pred, strict=True):
            if j.cond.area is None:
                out[j.side] += p * j.mult
                counts[j.side] += j.mult
            else:
                _crop(out[j.side], j.cond.area, 2).add_(p * j.mult)
                _crop(counts[j.side], j.cond.area, 2).add_(j.mult)
    for o, n in zip(out, counts, strict=True):
        o /= n
    return out


class CFGDenoiser:
    """``denoiser(x, sigma) -> x0`` with classifier-free guidance over positive / negative conds."""

    def __init__(self, model: Any, positive: list[Cond], negative: list[Cond], cfg: float) -> None:
        self.model = model
        self.positive = positive
        self.negative = negative
        self.cfg = float(cfg)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        uncond = None if math.isclose(self.cfg, 1.0) else self.negative
        cond_pred, uncond_pred = calc_cond_batch(self.model, [self.positive, uncond], x, sigma)
        if uncond is None:
            return cond_pred
        return uncond_pred + (cond_pred - uncond_pred) * self.cfg


class InpaintDenoiser:
    """Noise-mask inpainting around a denoiser (ComfyUI's KSamplerX0Inpaint, parity rule 6).

    Before each call the kept region (mask 0) is replaced by the original latent re-noised to the current
    sigma with ``noise``; after it the kept region of x0 is the original latent.
    """

    def __init__(self, inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], model_sampling: Any,
                 latent: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.inner = inner
        self.model_sampling = model_sampling
        self.latent = latent
        self.noise = noise
        self.mask = mask

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return self.inner(x, sigma)
        keep = 1.0 - self.mask
        column = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
        renoised: torch.Tensor = self.model_sampling.noise_scaling(column, self.noise, self.latent)
        x = x * self.mask + renoised * keep
        out = self.inner(x, sigma)
        return out * self.mask + self.latent * keep
