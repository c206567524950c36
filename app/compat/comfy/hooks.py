"""ComfyUI's `comfy.hooks` for packs: the hook classes packs name in signatures and type checks (`HookGroup`,
`Hook`, `WrapperHook`, `WeightHook`, `ObjectPatchHook`, `AdditionalModelsHook`, `TransformerOptionsHook`).

Loom does not run ComfyUI's hook system (hooks registered on conds and controls, keyframed hook weights), so the
classes exist and building one raises, naming the class: a node that needs hooks fails with that message rather
than running without them. The keyframe classes are Loom's (`HookKeyframe`; `HookKeyframeGroup` is Loom's keyframe
schedule with ComfyUI's in-place `add` and `clone`), and the conditioning helpers put Loom's hooks
(`engine.hooks`, `engine.hook_conds`) on conditioning with ComfyUI's keywords (`timesteps_range`, `append_hooks`).
`load_hook_lora_for_models` (a LoRA patched on model and CLIP clones under a hook) raises: Loom's hook LoRAs travel
on conditioning (CreateHookLora + the cond nodes). The module accepts attributes packs store on it (AnimateDiff-Evolved's and
Advanced-ControlNet's shared `__DINKLINK` registry). Loom's own hook nodes keep their own implementation
(`engine.sampling.hook_run`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine import hook_conds
from engine.hooks import HookGroup as LoomHooks
from engine.hooks import HookKeyframe, HookKeyframes

__all__ = ["AdditionalModelsHook", "Hook", "HookGroup", "ObjectPatchHook", "TransformerOptionsHook", "WeightHook",
           "WrapperHook", "HookKeyframe", "HookKeyframeGroup", "set_hooks_for_conditioning", "set_conds_props",
           "set_conds_props_and_combine", "set_default_conds_and_combine", "load_hook_lora_for_models"]

Conds = Sequence[Any]
Range = tuple[float, float] | None


class Hook:
    """Stand-in for ComfyUI's hook base class: subclassable, not buildable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"comfy.hooks.{type(self).__name__}: ComfyUI's hook system is not provided by Loom")


class HookGroup(Hook):
    """Stand-in for ComfyUI's HookGroup."""


class WeightHook(Hook):
    """Stand-in for ComfyUI's WeightHook."""


class ObjectPatchHook(Hook):
    """Stand-in for ComfyUI's ObjectPatchHook."""


class AdditionalModelsHook(Hook):
    """Stand-in for ComfyUI's AdditionalModelsHook."""


class TransformerOptionsHook(Hook):
    """Stand-in for ComfyUI's TransformerOptionsHook."""


class WrapperHook(TransformerOptionsHook):
    """Stand-in for ComfyUI's WrapperHook."""


class HookKeyframeGroup(HookKeyframes):
    """HOOK_KEYFRAMES built the ComfyUI way: ``HookKeyframeGroup()``, then ``add(keyframe)`` in place."""

    def add(self, keyframe: HookKeyframe) -> HookKeyframes:
        """Add ``keyframe`` to this schedule (kept sorted by start percent); returns the schedule."""
        object.__setattr__(self, "keyframes", HookKeyframes.add(self, keyframe).keyframes)
        return self

    def clone(self) -> HookKeyframeGroup:
        """A separate schedule with the same keyframes."""
        return HookKeyframeGroup(self.keyframes)


def set_hooks_for_conditioning(cond: Any, hooks: LoomHooks | None, append_hooks: bool = True,
                               cache: dict[Any, LoomHooks] | None = None) -> Any:
    """Each entry carrying ``hooks``: combined with hooks it already has, or replacing them (``append_hooks=False``)."""
    if hooks is None:
        return cond
    if not append_hooks:
        return hook_conds.set_values(cond, {"hooks": hooks})
    return hook_conds.set_hooks(cond, hooks, cache)


def _with_hooks(conds: Conds, hooks: LoomHooks | None, append_hooks: bool) -> list[Any]:
    cache: dict[Any, LoomHooks] = {}
    return [set_hooks_for_conditioning(c, hooks, append_hooks, cache) for c in conds]


def set_conds_props(conds: Conds, strength: float, set_cond_area: str, mask: Any = None,
                    hooks: LoomHooks | None = None, timesteps_range: Range = None,
                    append_hooks: bool = True) -> list[Any]:
    """Hooks, then the mask (``strength``, ``set_cond_area``), then the timestep range on each conditioning."""
    return hook_conds.set_conds_props(_with_hooks(conds, hooks, append_hooks), strength, set_cond_area, mask=mask,
                                      timesteps=timesteps_range)


def set_conds_props_and_combine(conds: Conds, new_conds: Conds, strength: float = 1.0, set_cond_area: str = "default",
                                mask: Any = None, hooks: LoomHooks | None = None, timesteps_range: Range = None,
                                append_hooks: bool = True) -> list[Any]:
    """``set_conds_props`` on each new conditioning, appended to the matching existing one."""
    return hook_conds.set_conds_props_and_combine(conds, _with_hooks(new_conds, hooks, append_hooks), strength,
                                                  set_cond_area, mask=mask, timesteps=timesteps_range)


def set_default_conds_and_combine(conds: Conds, new_conds: Conds, hooks: LoomHooks | None = None,
                                  timesteps_range: Range = None, append_hooks: bool = True) -> list[Any]:
    """Each new conditioning (with ``hooks`` and the timestep range) flagged ``default`` and appended to the
    matching existing one."""
    new = _with_hooks(new_conds, hooks, append_hooks)
    if timesteps_range is not None:
        new = hook_conds.set_conds_props(new, 1.0, "default", timesteps=timesteps_range)
    return hook_conds.set_default_conds_and_combine(conds, new)


def load_hook_lora_for_models(model: Any, clip: Any, lora: Any, strength_model: float, strength_clip: float) -> Any:
    """Raises: Loom puts hook LoRAs on conditioning, not as hook patches on MODEL / CLIP clones."""
    raise NotImplementedError("comfy.hooks.load_hook_lora_for_models: Loom does not patch hook LoRAs onto MODEL / CLIP "
                              "clones; use CreateHookLora and the conditioning hook nodes (Cond Set Props, Set CLIP "
                              "Hooks)")
