"""Hooks: LoRA-style weight patches that travel on conditioning instead of on the model (ComfyUI's HOOKS).

A ``HookGroup`` (the HOOKS value) holds ``WeightHook``s: a kohya LoRA, or a whole checkpoint used as a LoRA
(delta = its weight - the model's), with a model and a CLIP strength and an optional keyframe schedule
(``HookKeyframes``, the HOOK_KEYFRAMES value: a strength multiplier from a start percent of the schedule on).

* CLIP side (``set_clip_hooks``): the text encoder gets the hooks' CLIP patches while encoding; with
  ``schedule_clip`` a prompt is encoded once per keyframe range, each cond limited to its range
  (``clip_start_percent`` / ``clip_end_percent``). With ``apply_to_conds`` the conds carry the group as
  ``"hooks"``.
* Model side (``engine.sampling.hook_run``): conds carrying a group are evaluated on a clone of the model
  handle with the group's patches at ``strength_model x`` the keyframe multiplier of the current step; conds
  with different groups run in separate model calls. Base weights are never modified (``engine.patching``).

Reference behaviour: ComfyUI 0.3.64 ``comfy/hooks.py`` (keyframe selection, CLIP schedule ranges, combining).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from engine.clip_handle import ClipHandle, ClipSchedule, PatchSets
from engine.handles import ModelHandle
from engine.lora import clip_lora_patches, lora_modules, model_lora_patches
from engine.names import HOOK_INTERPOLATIONS
from engine.patching import Patch

__all__ = ["HookKeyframe", "HookKeyframes", "WeightHook", "HookGroup", "INTERPOLATIONS", "interpolate",
           "hook_lora", "hook_model_as_lora", "combine_hooks", "model_patches", "clip_patches", "clip_schedule",
           "set_clip_hooks"]

INTERPOLATIONS = HOOK_INTERPOLATIONS


@dataclass(frozen=True)
class HookKeyframe:
    """From ``start_percent`` of the schedule on, hooks are applied at ``strength`` x their own strength;
    ``guarantee_steps``: steps this keyframe stays current before a later one may take over."""

    strength: float
    start_percent: float = 0.0
    guarantee_steps: int = 1


@dataclass(frozen=True, eq=False)
class HookKeyframes:
    """HOOK_KEYFRAMES: keyframes sorted by start percent (stable for equal starts). Compared by identity:
    hooks that share one schedule object share its state during a sampling run, as in ComfyUI."""

    keyframes: tuple[HookKeyframe, ...] = ()

    def add(self, keyframe: HookKeyframe) -> HookKeyframes:
        """A new schedule with ``keyframe`` added."""
        return HookKeyframes(tuple(sorted((*self.keyframes, keyframe), key=lambda k: k.start_percent)))


@dataclass(frozen=True, eq=False)
class WeightHook:
    """One LoRA (``lora``: kohya tensors) or checkpoint-as-LoRA (``model_source`` / ``clip_source``: handles
    of the other checkpoint). ``ref`` is shared by copies that differ only in keyframes (ComfyUI's hook_ref):
    a group never holds two hooks with one ref."""

    strength_model: float
    strength_clip: float
    lora: Mapping[str, torch.Tensor] | None = None
    model_source: ModelHandle | None = None
    clip_source: ClipHandle | None = None
    keyframes: HookKeyframes = field(default_factory=HookKeyframes)
    ref: object = field(default_factory=object)


class HookGroup:
    """HOOKS: an ordered set of weight hooks (by ``ref``). Compared by identity: conds carrying the same
    group object are batched into one model call during sampling."""

    def __init__(self, hooks: Iterable[WeightHook] = ()) -> None:
        unique: list[WeightHook] = []
        for hook in hooks:
            if all(hook.ref is not h.ref for h in unique):
                unique.append(hook)
        self.hooks: tuple[WeightHook, ...] = tuple(unique)

    def __len__(self) -> int:
        return len(self.hooks)

    def __repr__(self) -> str:
        return f"HookGroup({len(self.hooks)} hooks)"

    def combine(self, other: HookGroup | None) -> HookGroup:
        """A new group: these hooks, then those of ``other`` not already in it."""
        return HookGroup(self.hooks + (other.hooks if other is not None else ()))

    def with_keyframes(self, keyframes: HookKeyframes | None) -> HookGroup:
        """A new group whose hooks all share one fresh copy of ``keyframes`` (None: no schedule)."""
        shared = HookKeyframes(keyframes.keyframes if keyframes is not None else ())
        return HookGroup(replace(h, keyframes=shared) for h in self.hooks)


def combine_hooks(groups: Sequence[HookGroup | None]) -> HookGroup | None:
    """CombineHooks: None for no group, the group itself for one, else their combination in order."""
    present = [g for g in groups if g is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    out = present[0]
    for g in present[1:]:
        out = out.combine(g)
    return out


def hook_lora(lora: Mapping[str, torch.Tensor], strength_model: float, strength_clip: float) -> HookGroup:
    """A group with one LoRA hook; raises ValueError for tensors without kohya LoRA modules."""
    if not lora_modules(lora):
        raise ValueError("no LoRA modules (keys ending in .lora_down.weight) in this file")
    return HookGroup([WeightHook(float(strength_model), float(strength_clip), lora=lora)])


def hook_model_as_lora(model: ModelHandle | None, clip: ClipHandle | None, strength_model: float,
                       strength_clip: float) -> HookGroup:
    """A group with one hook that moves a model towards ``model`` / ``clip`` (weight - base weight)."""
    return HookGroup([WeightHook(float(strength_model), float(strength_clip), model_source=model,
                                 clip_source=clip)])


def interpolate(start: float, end: float, count: int, method: str) -> list[float]:
    """``count`` values from ``start`` to ``end`` (float32, as ComfyUI's InterpolationMethod)."""
    index = torch.linspace(0, 1, count)
    diff = end - start
    if method == "linear":
        values = torch.linspace(start, end, count)
    elif method == "ease_in":
        values = diff * index.pow(2) + start
    elif method == "ease_out":
        values = diff * (1 - (1 - index).pow(2)) + start
    elif method == "ease_in_out":
        values = diff * ((1 - torch.cos(index * math.pi)) / 2) + start
    else:
        raise ValueError(f"unknown interpolation {method!r}; expected one of {', '.join(INTERPOLATIONS)}")
    return [float(v) for v in values]


def _as_lora(source: nn.Module, target: nn.Module) -> dict[str, Patch]:
    """Checkpoint-as-LoRA deltas: source weight - target base weight, for parameters of the same shape."""
    src = dict(source.named_parameters())
    out: dict[str, Patch] = {}
    for name, base in target.named_parameters():
        other = src.get(name)
        if other is None or other.shape != base.shape:
            continue

        def delta(w: torch.Tensor, other: torch.Tensor = other, base: torch.Tensor = base) -> torch.Tensor:
            return other.detach().to(w.device, torch.float32) - base.detach().to(w.device, torch.float32)

        out[name] = delta
    return out


def model_patches(hook: WeightHook, model: ModelHandle) -> dict[str, Patch]:
    """The hook's UNet patches for ``model`` (parameter name -> delta)."""
    if hook.lora is not None:
        return model_lora_patches(model, hook.lora)
    if hook.model_source is not None:
        return _as_lora(hook.model_source.diffusion_model, model.diffusion_model)
    return {}


def clip_patches(hook: WeightHook, clip: ClipHandle) -> dict[str, Patch]:
    """The hook's text-encoder patches for ``clip``."""
    if hook.lora is not None:
        return clip_lora_patches(clip, hook.lora)
    if hook.clip_source is not None:
        return _as_lora(hook.clip_source.encoders, clip.encoders)
    return {}


Range = tuple[float, float]


def _hook_ranges(hook: WeightHook) -> list[tuple[Range, HookKeyframe | None]]:
    kfs = hook.keyframes.keyframes
    if not kfs:
        return [((0.0, 1.0), None)]
    ranges: list[tuple[Range, HookKeyframe | None]] = []
    prev = kfs[0]
    for kf in kfs:
        if kf.start_percent > prev.start_percent and not math.isclose(kf.strength, prev.strength):
            ranges.append(((prev.start_percent, kf.start_percent), prev))
            prev = kf
        elif kf.start_percent == prev.start_percent:
            prev = kf
    if not math.isclose(prev.start_percent, 1.0):
        ranges.append(((prev.start_percent, 1.0), prev))
    return ranges


def clip_schedule(hooks: HookGroup) -> list[tuple[Range, list[float]]]:
    """Percent ranges over which every hook's keyframe multiplier is constant, with those multipliers
    (one per hook; 1.0 where a hook has no keyframe in the range). ComfyUI's get_hooks_for_clip_schedule."""
    per_hook = [_hook_ranges(h) for h in hooks.hooks]
    bounds = sorted({0.0} | {b for ranges in per_hook for r, _ in ranges for b in r})
    out: list[tuple[Range, list[float]]] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        mults = []
        for ranges in per_hook:
            kf = next((k for (a, b), k in ranges if a < hi and b > lo), None)
            mults.append(kf.strength if kf is not None else 1.0)
        out.append(((lo, hi), mults))
    return out


def set_clip_hooks(clip: ClipHandle, hooks: HookGroup, apply_to_conds: bool, schedule_clip: bool) -> ClipHandle:
    """SetClipHooks: a clone of ``clip`` that encodes with the hooks' CLIP patches (at strength_clip; per
    keyframe range with ``schedule_clip``) and, with ``apply_to_conds``, puts ``hooks`` on its conds. The
    hooks replace those of an earlier SetClipHooks (whose conds hooks stay unless ``apply_to_conds``)."""
    out = clip.clone()
    if apply_to_conds:
        out.cond_hooks = hooks
    sets = [(clip_patches(h, clip), h.strength_clip) for h in hooks.hooks]

    def scaled(mults: Sequence[float]) -> PatchSets:
        # a zero-strength patch leaves the weight as it is
        return [(p, s * m) for (p, s), m in zip(sets, mults, strict=True) if p and s * m != 0]

    if schedule_clip:
        schedule: ClipSchedule = [(rng, scaled(mults)) for rng, mults in clip_schedule(hooks)]
        out.clip_schedule = schedule
        out.hook_patches = schedule[0][1] if schedule else []  # direct encodes: the first range's strengths
    else:
        out.clip_schedule = None
        out.hook_patches = scaled([1.0] * len(sets))
    return out
