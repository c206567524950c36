"""Per-run state of the hooks that conds carry (``engine.hooks``): keyframe clocks and hooked model clones.

``bind_hooks`` gives every cond whose options carry a ``HookGroup`` the ``HookRun`` of that group (one per
group object, so conds of one group batch together). At each step ``HookRun.model_for`` advances the
keyframe clocks to the current sigma and returns a clone of the model handle carrying the group's patches
at ``strength_model x`` keyframe multiplier; the shared network's weights are never touched, so switching
groups or keyframes needs no restore. One clone is kept per run and group (rebuilt when the multipliers
change), so its patched weights are computed once per keyframe.

Keyframe selection follows ComfyUI 0.3.64 (``HookKeyframeGroup.prepare_current_keyframe``): the first
keyframe is current from the first step; once the current one has been used for its guaranteed steps, the
next keyframes whose start sigma is >= the current sigma take over (stopping at one with guaranteed steps);
a keyframe whose start lies before the run's largest sigma guarantees nothing. Each distinct sigma counts as
one step.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.hooks import HookGroup, HookKeyframes, WeightHook, model_patches
from engine.patching import Patch
from engine.sampling.conditioning import Cond

__all__ = ["HookRun", "KeyframeClock", "bind_hooks"]


def _f32(value: float) -> float:
    """Round to float32, as ComfyUI's comparisons of Python floats with float32 sigmas do."""
    return float(torch.tensor(value, dtype=torch.float32))


class KeyframeClock:
    """Which keyframe of one schedule is current, advanced once per distinct sigma."""

    def __init__(self, keyframes: HookKeyframes, model_sampling: Any, max_sigma: float) -> None:
        self.keyframes = keyframes.keyframes
        self.start = [_f32(model_sampling.percent_to_sigma(k.start_percent)) for k in self.keyframes]
        self.max_sigma = _f32(max_sigma)
        self.index = 0
        self.used = 0
        self.last: float | None = None

    def _guarantee(self, i: int) -> int:
        return 0 if self.start[i] > self.max_sigma else self.keyframes[i].guarantee_steps

    def strength(self, sigma: float) -> float:
        """The current keyframe's multiplier at ``sigma`` (1.0 without keyframes)."""
        if not self.keyframes:
            return 1.0
        if sigma != self.last:
            if self.used >= self._guarantee(self.index):
                for i in range(self.index + 1, len(self.keyframes)):
                    if self.start[i] < sigma:
                        break
                    self.index, self.used = i, 0
                    if self._guarantee(i) > 0:
                        break
            self.used += 1
            self.last = sigma
        return float(self.keyframes[self.index].strength)


class HookRun:
    """One hook group during one sampling run: its clocks (shared with the run's other groups) and clone."""

    def __init__(self, group: HookGroup, clocks: dict[int, KeyframeClock]) -> None:
        self.group = group
        self.clocks = clocks
        self._patches: dict[tuple[int, int], dict[str, Patch]] = {}
        self._clone: tuple[tuple[int, tuple[float, ...]], Any] | None = None

    def _patches_for(self, hook: WeightHook, model: Any) -> dict[str, Patch]:
        key = (id(hook), id(model.diffusion_model))
        if key not in self._patches:
            self._patches[key] = model_patches(hook, model)
        return self._patches[key]

    def strengths(self, sigma: float) -> tuple[float, ...]:
        """strength_model x keyframe multiplier of each hook at ``sigma`` (advances the clocks)."""
        return tuple(h.strength_model * self.clocks[id(h.keyframes)].strength(sigma) for h in self.group.hooks)

    def model_for(self, model: Any, sigma: float) -> Any:
        """``model`` itself when every strength is 0, else its clone carrying the group's patches."""
        strengths = self.strengths(sigma)
        if all(s == 0 for s in strengths):
            return model
        key = (id(model), strengths)
        if self._clone is not None and self._clone[0] == key:
            return self._clone[1]
        hooked = model.clone()
        for hook, strength in zip(self.group.hooks, strengths, strict=True):
            patches = self._patches_for(hook, model)
            if patches and strength != 0:
                hooked.add_patches(patches, strength)
        self._clone = (key, hooked)
        return hooked


def bind_hooks(sides: Sequence[list[Cond]], model_sampling: Any, sigmas: torch.Tensor) -> None:
    """Give each cond carrying ``"hooks"`` its group's HookRun for this run (``sigmas``: the run's schedule)."""
    runs: dict[int, HookRun] = {}
    clocks: dict[int, KeyframeClock] = {}
    max_sigma = float(sigmas.max()) if sigmas.numel() else 0.0
    for conds in sides:
        for c in conds:
            group = c.extra.get("hooks")
            if group is None:
                continue
            if not isinstance(group, HookGroup):
                raise TypeError(f"conditioning 'hooks' must be HOOKS (from CreateHookLora and friends), "
                                f"got {type(group).__name__}")
            for hook in group.hooks:
                if id(hook.keyframes) not in clocks:
                    clocks[id(hook.keyframes)] = KeyframeClock(hook.keyframes, model_sampling, max_sigma)
            if id(group) not in runs:
                runs[id(group)] = HookRun(group, clocks)
            c.hooks = runs[id(group)]
