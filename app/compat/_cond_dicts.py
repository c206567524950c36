"""ComfyUI's view of resolved conditioning entries, for the ``calc_cond_batch`` wrappers packs register: each of
Loom's ``engine.sampling.conditioning.Cond`` records as the cond dict ComfyUI's sampler hands those wrappers, and
back.

A dict holds ``model_conds`` (``c_crossattn`` as ``comfy.conds.CONDCrossAttn``, ``y`` as ``CONDRegular``,
``c_concat`` as ``CONDNoiseShape``), ``strength``, ``mask`` and ``control`` where the entry has them, and the record
it came from. A wrapper may copy a dict and replace these values (AnimateDiff-Evolved's context windows slice the
tensors whose batch is the latent's); the record handed on is the original with the dict's ``model_conds`` tensors
and ``mask``. Its other fields (area, timestep range, hooks, the ControlNet run) come from the original record.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.sampling.conditioning import Cond

__all__ = ["to_dicts", "from_dicts"]

_RECORD = "loom_cond"  # the key holding the record a dict was made from


def _to_dict(cond: Cond) -> dict[str, Any]:
    import comfy.conds  # the shim packs see now (this runs only while it is loaded)

    model_conds: dict[str, Any] = {"c_crossattn": comfy.conds.CONDCrossAttn(cond.cross_attn)}
    if cond.y is not None:
        model_conds["y"] = comfy.conds.CONDRegular(cond.y)
    if cond.concat is not None:
        model_conds["c_concat"] = comfy.conds.CONDNoiseShape(cond.concat)
    out: dict[str, Any] = {"model_conds": model_conds, "strength": cond.strength, _RECORD: cond}
    if cond.mask is not None:
        out["mask"] = cond.mask
    if cond.control is not None:
        out["control"] = cond.control
    return out


def _from_dict(entry: Any) -> Cond:
    if isinstance(entry, Cond):
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get(_RECORD), Cond):
        raise TypeError(f"a calc_cond_batch wrapper passed on a conditioning entry of type {type(entry).__name__} "
                        "that Loom did not hand it: pass on (copies of) the cond dicts it was given")
    base: Cond = entry[_RECORD]
    model_conds = entry.get("model_conds", {})

    def value(key: str, old: Any) -> Any:
        item = model_conds.get(key)
        return old if item is None else item.cond

    return replace(base, cross_attn=value("c_crossattn", base.cross_attn), y=value("y", base.y),
                   concat=value("c_concat", base.concat), mask=entry.get("mask", base.mask))


def to_dicts(sides: list[list[Cond] | None]) -> list[list[dict[str, Any]] | None]:
    """ComfyUI's cond dicts for each side's entries (None stays None)."""
    return [None if side is None else [_to_dict(c) for c in side] for side in sides]


def from_dicts(sides: list[Any]) -> list[list[Cond] | None]:
    """The records for each side's cond dicts, with the values a wrapper replaced."""
    return [None if side is None else [_from_dict(e) for e in side] for side in sides]
