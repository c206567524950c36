"""CONDITIONING edits of the hook nodes: attach hooks, a mask, a timestep range or the ``default`` flag to
every entry, and combine with other conditioning (ComfyUI 0.3.64 ``comfy/hooks.py`` set_conds_props & co).

Entries are copied, never mutated. Hooks already on an entry are combined with the new group (old hooks
first); entries that had the same group get the same combined group object, so they still batch together.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.hooks import HookGroup

__all__ = ["set_values", "set_hooks", "set_conds_props", "set_conds_props_and_combine",
           "set_default_conds_and_combine"]

Conditioning = list[list[Any]]
TimestepsRange = tuple[float, float]
_Cache = dict[tuple[int, int], HookGroup]


def set_values(cond: Conditioning, values: dict[str, Any]) -> Conditioning:
    """Each entry with ``values`` set in a copy of its options."""
    return [[t, {**d, **values}] for t, d in cond]


def set_hooks(cond: Conditioning, hooks: HookGroup | None, cache: _Cache | None = None) -> Conditioning:
    """Each entry carrying ``hooks`` (combined with hooks it already has); unchanged when ``hooks`` is None."""
    if hooks is None:
        return cond
    cache = {} if cache is None else cache
    out: Conditioning = []
    for t, d in cond:
        old = d.get("hooks")
        if old is None:
            new = hooks
        else:
            key = (id(old), id(hooks))
            if key not in cache:
                cache[key] = old.combine(hooks)
            new = cache[key]
        out.append([t, {**d, "hooks": new}])
    return out


def _set_mask(cond: Conditioning, mask: torch.Tensor | None, set_cond_area: str, strength: float) -> Conditioning:
    if mask is None:
        return cond
    if mask.ndim < 3:
        mask = mask.unsqueeze(0)
    return set_values(cond, {"mask": mask, "set_area_to_bounds": set_cond_area != "default",
                             "mask_strength": strength})


def _set_timesteps(cond: Conditioning, timesteps: TimestepsRange | None) -> Conditioning:
    if timesteps is None:
        return cond
    return set_values(cond, {"start_percent": timesteps[0], "end_percent": timesteps[1]})


def _props(cond: Conditioning, strength: float, set_cond_area: str, mask: torch.Tensor | None,
           hooks: HookGroup | None, timesteps: TimestepsRange | None, cache: _Cache) -> Conditioning:
    cond = set_hooks(cond, hooks, cache)
    cond = _set_mask(cond, mask, set_cond_area, strength)
    return _set_timesteps(cond, timesteps)


def set_conds_props(conds: Sequence[Conditioning], strength: float, set_cond_area: str,
                    mask: torch.Tensor | None = None, hooks: HookGroup | None = None,
                    timesteps: TimestepsRange | None = None) -> list[Conditioning]:
    """Hooks, then the mask (with ``strength`` as its mask_strength; ``set_cond_area`` "mask bounds" limits the
    area to the mask's bounds), then the timestep range, on each conditioning. Without a mask ``strength``
    has no effect (ComfyUI's behaviour)."""
    cache: _Cache = {}
    return [_props(c, strength, set_cond_area, mask, hooks, timesteps, cache) for c in conds]


def set_conds_props_and_combine(conds: Sequence[Conditioning], new_conds: Sequence[Conditioning],
                                strength: float = 1.0, set_cond_area: str = "default",
                                mask: torch.Tensor | None = None, hooks: HookGroup | None = None,
                                timesteps: TimestepsRange | None = None) -> list[Conditioning]:
    """``set_conds_props`` on each new conditioning, appended to the matching existing one."""
    cache: _Cache = {}
    return [list(c) + _props(n, strength, set_cond_area, mask, hooks, timesteps, cache)
            for c, n in zip(conds, new_conds, strict=True)]


def set_default_conds_and_combine(conds: Sequence[Conditioning], new_conds: Sequence[Conditioning],
                                  hooks: HookGroup | None = None) -> list[Conditioning]:
    """Each new conditioning (with ``hooks``) flagged ``default`` and appended to the matching existing one:
    during sampling a default entry fills only what its side's other entries leave uncovered."""
    cache: _Cache = {}
    return [list(c) + set_values(set_hooks(n, hooks, cache), {"default": True})
            for c, n in zip(conds, new_conds, strict=True)]
