"""Turn CONDITIONING lists into per-entry records the CFG guider evaluates (ComfyUI's semantics).

An entry is ``[cross_attn Tensor[B,T,C], options dict]``; recognised options: ``area`` (latent units
``(h, w, y, x)`` or ``("percentage", h, w, y, x)``), ``strength``, ``mask`` / ``mask_strength`` /
``set_area_to_bounds``, ``start_percent`` / ``end_percent`` (or ready ``timestep_start`` /
``timestep_end`` sigmas), ``concat_latent_image`` / ``concat_mask`` (9-channel inpaint models),
``y`` / ``pooled_output`` (ADM conditioning, passed through), ``clip_start_percent`` / ``clip_end_percent``
(a hook-scheduled CLIP encode's range, intersected with start / end percent), ``hooks`` (an
``engine.hooks.HookGroup``, bound per run by ``engine.sampling.hook_run.bind_hooks``), ``default`` (an entry
that fills only what the side's other entries leave uncovered), ``reference_latents`` /
``reference_latents_method`` (Flux Kontext's reference images, ``engine.sampling.reference_latents``). An entry
carrying ``model_conds`` (model inputs a pack prepared as ComfyUI's ``comfy.conds`` values) is refused: Loom builds
the model inputs from the options above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

Area = tuple[int, ...]


@dataclass
class Cond:
    """One resolved conditioning entry (model inputs plus where and how strongly it applies)."""

    cross_attn: torch.Tensor
    area: Area | None = None
    strength: float = 1.0
    mask: torch.Tensor | None = None  # [B, H, W] at latent size
    mask_strength: float = 1.0
    sigma_start: float | None = None  # skip while sigma > sigma_start
    sigma_end: float | None = None  # skip while sigma < sigma_end
    y: torch.Tensor | None = None
    concat: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    control: Any = None  # engine.adapters.control.ControlRun of this entry's CONTROL_NET (set by bind_controls)
    hooks: Any = None  # engine.sampling.hook_run.HookRun of this entry's HOOKS (set by bind_hooks)
    ref_latents: list[torch.Tensor] | None = None  # reference latents in model space (bind_reference_latents)
    ref_method: str | None = None  # their reference_latents_method (None: the network's default)


def repeat_to_batch_size(t: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """Trim or tile a tensor along ``dim`` (the batch by default) to ``batch_size`` (ComfyUI's rule)."""
    if t.shape[dim] > batch_size:
        return t.narrow(dim, 0, batch_size)
    if t.shape[dim] < batch_size:
        reps = [1] * t.ndim
        reps[dim] = math.ceil(batch_size / t.shape[dim])
        return t.repeat(reps).narrow(dim, 0, batch_size)
    return t


def _mask_bounds_area(mask: torch.Tensor) -> Area:
    bounds = torch.max(torch.abs(mask), dim=0).values
    nz = torch.nonzero(bounds)
    if nz.numel() == 0:
        return (8, 8, 0, 0)
    y0, x0 = int(nz[:, 0].min()), int(nz[:, 1].min())
    y1, x1 = int(nz[:, 0].max()), int(nz[:, 1].max())
    return (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)


def _resolve_area(area: Any, dims: tuple[int, ...], where: str) -> Area:
    if isinstance(area, (tuple, list)) and area and area[0] == "percentage":
        frac = [float(a) for a in area[1:]]
        n = len(frac) // 2
        size = tuple(max(1, round(frac[d] * dims[d])) for d in range(len(dims)))
        offset = tuple(round(frac[d + n] * dims[d]) for d in range(len(dims)))
        return size + offset
    try:
        values = tuple(int(a) for a in area)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'area' must be (h, w, y, x) in latent units, got {area!r}") from None
    if len(values) != 2 * len(dims):
        raise ValueError(f"{where}: 'area' must have {2 * len(dims)} values (h, w, y, x), got {area!r}")
    return values


def _resolve_mask(mask: torch.Tensor, dims: tuple[int, ...], device: torch.device) -> torch.Tensor:
    m = mask.to(device=device, dtype=torch.float32)
    if m.ndim == len(dims):
        m = m.unsqueeze(0)
    if tuple(m.shape[1:]) != dims:
        m = F.interpolate(m.unsqueeze(1), size=dims, mode="bilinear", align_corners=False).squeeze(1)
    return m


def _sigma_window(opts: dict[str, Any], model_sampling: Any) -> tuple[float | None, float | None]:
    """(sigma_start, sigma_end) of an entry: a hook-scheduled CLIP range intersected with its start / end
    percent, else start / end percent, else ready timestep_start / timestep_end sigmas (ComfyUI's rule)."""
    if "clip_start_percent" in opts:
        start = max(float(opts["clip_start_percent"]), float(opts.get("start_percent", 0.0)))
        end = min(float(opts.get("clip_end_percent", 1.0)), float(opts.get("end_percent", 1.0)))
        return float(model_sampling.percent_to_sigma(start)), float(model_sampling.percent_to_sigma(end))
    sigma_start = sigma_end = None
    if "start_percent" in opts:
        sigma_start = float(model_sampling.percent_to_sigma(float(opts["start_percent"])))
    elif opts.get("timestep_start") is not None:
        sigma_start = float(opts["timestep_start"])
    if "end_percent" in opts:
        sigma_end = float(model_sampling.percent_to_sigma(float(opts["end_percent"])))
    elif opts.get("timestep_end") is not None:
        sigma_end = float(opts["timestep_end"])
    return sigma_start, sigma_end


def resolve_conds(
    entries: list[Any], latent_shape: torch.Size, model_sampling: Any, device: torch.device, name: str
) -> list[Cond]:
    """Validate and resolve one CONDITIONING list for a latent of ``latent_shape``."""
    if not isinstance(entries, (list, tuple)):
        raise TypeError(f"{name} conditioning must be a list of [tensor, dict] pairs, got {type(entries).__name__}")
    dims = tuple(int(d) for d in latent_shape[2:])
    out: list[Cond] = []
    for k, entry in enumerate(entries):
        where = f"{name} conditioning entry {k}"
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], torch.Tensor):
            raise TypeError(f"{where}: expected [Tensor[B,T,C], dict], got {type(entry).__name__}")
        tensor, opts = entry[0], dict(entry[1] or {})
        if opts.get("model_conds"):
            raise ValueError(f"{where}: 'model_conds' ({', '.join(map(str, opts['model_conds']))}: model inputs a "
                             "custom node prepared as ComfyUI's comfy.conds values) is not supported; Loom builds "
                             "model inputs from the entry's options (concat_latent_image, concat_mask, y, ...)")
        c = Cond(cross_attn=tensor.to(device=device, dtype=torch.float32))
        if "area" in opts:
            c.area = _resolve_area(opts["area"], dims, where)
        c.strength = float(opts.get("strength", 1.0))
        if opts.get("mask") is not None:
            c.mask = _resolve_mask(opts["mask"], dims, device)
            c.mask_strength = float(opts.get("mask_strength", 1.0))
            if opts.get("set_area_to_bounds", False):
                c.area = _mask_bounds_area(c.mask)
        c.sigma_start, c.sigma_end = _sigma_window(opts, model_sampling)
        if opts.get("y") is not None:
            c.y = opts["y"].to(device)
        c.extra = opts
        out.append(c)
    return out


def _area_inside(a: Area, outer: Area) -> bool:
    n = len(a) // 2
    for i in range(n):
        if a[n + i] < outer[n + i]:
            return False
    for i in range(n):
        if a[i] + a[n + i] > outer[i] + outer[n + i]:
            return False
    return True


def add_matching_areas(conds: list[Cond], others: list[Cond]) -> None:
    """Give ``conds`` a same-area twin of every area entry in ``others`` (ComfyUI pairs cond and uncond areas).

    The twin copies the area entry's placement and weights but the model inputs of the smallest entry of
    ``conds`` covering that area (or the first full-frame entry).
    """
    for c in others:
        if c.area is None:
            continue
        smallest: Cond | None = None
        for x in conds:
            if x.area is not None:
                if _area_inside(c.area, x.area):
                    if smallest is None or smallest.area is None:
                        smallest = x
                    elif math.prod(smallest.area[: len(smallest.area) // 2]) > math.prod(x.area[: len(x.area) // 2]):
                        smallest = x
            elif smallest is None:
                smallest = x
        if smallest is None or smallest.area == c.area:
            continue
        conds.append(replace(c, cross_attn=smallest.cross_attn, y=smallest.y, concat=smallest.concat,
                             ref_latents=smallest.ref_latents, ref_method=smallest.ref_method))
