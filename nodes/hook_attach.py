"""Hook nodes, part 2 (ComfyUI 0.3.64 ``comfy_extras/nodes_hooks.py``): put HOOKS, masks and timestep ranges on
conditioning (``engine.hook_conds``), combine conditioning pairs, and hook a CLIP (``engine.hooks.set_clip_hooks``).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from nodes._base import InputTypes, input_error
from nodes.hooks import HookNode, hooks_in

__all__ = ["NODES"]


def _conds() -> ModuleType:
    """``engine.hook_conds``, imported when a node runs (it imports torch; registering the nodes must not)."""
    import engine.hook_conds

    return engine.hook_conds

_PROPS_REQUIRED: dict[str, Any] = {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                                   "set_cond_area": (["default", "mask bounds"],)}
_PROPS_OPTIONAL: dict[str, Any] = {"mask": ("MASK",), "hooks": ("HOOKS",), "timesteps": ("TIMESTEPS_RANGE",)}


def _set_cond_area(node: str, value: str) -> str:
    if value not in ("default", "mask bounds"):
        raise input_error(node, "set_cond_area", f"must be 'default' or 'mask bounds', got {value!r}")
    return value


class ConditioningSetProperties(HookNode):
    """Put hooks, a mask (strength = its mask strength) and a timestep range on a conditioning."""

    DISPLAY_NAME = "Cond Set Props"
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_properties"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"cond_NEW": ("CONDITIONING",), **_PROPS_REQUIRED}, "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, cond_NEW: Any, strength: float, set_cond_area: str, mask: Any = None,
                       hooks: Any = None, timesteps: Any = None) -> tuple[Any]:
        node = "ConditioningSetProperties"
        (out,) = _conds().set_conds_props([cond_NEW], strength, _set_cond_area(node, set_cond_area), mask,
                                            hooks_in(node, "hooks", hooks), timesteps)
        return (out,)


class ConditioningSetPropertiesAndCombine(HookNode):
    """ConditioningSetProperties on ``cond_NEW``, appended to ``cond``."""

    DISPLAY_NAME = "Cond Set Props Combine"
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_properties"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"cond": ("CONDITIONING",), "cond_NEW": ("CONDITIONING",), **_PROPS_REQUIRED},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, cond: Any, cond_NEW: Any, strength: float, set_cond_area: str, mask: Any = None,
                       hooks: Any = None, timesteps: Any = None) -> tuple[Any]:
        node = "ConditioningSetPropertiesAndCombine"
        (out,) = _conds().set_conds_props_and_combine([cond], [cond_NEW], strength,
                                                        _set_cond_area(node, set_cond_area), mask,
                                                        hooks_in(node, "hooks", hooks), timesteps)
        return (out,)


class PairConditioningSetProperties(HookNode):
    """ConditioningSetProperties on a positive / negative pair."""

    DISPLAY_NAME = "Cond Pair Set Props"
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_properties"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             **_PROPS_REQUIRED},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, positive_NEW: Any, negative_NEW: Any, strength: float, set_cond_area: str,
                       mask: Any = None, hooks: Any = None, timesteps: Any = None) -> tuple[Any, Any]:
        node = "PairConditioningSetProperties"
        pos, neg = _conds().set_conds_props([positive_NEW, negative_NEW], strength,
                                              _set_cond_area(node, set_cond_area), mask,
                                              hooks_in(node, "hooks", hooks), timesteps)
        return (pos, neg)


class PairConditioningSetPropertiesAndCombine(HookNode):
    """PairConditioningSetProperties on the _NEW pair, appended to positive / negative."""

    DISPLAY_NAME = "Cond Pair Set Props Combine"
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_properties"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             **_PROPS_REQUIRED},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, positive: Any, negative: Any, positive_NEW: Any, negative_NEW: Any, strength: float,
                       set_cond_area: str, mask: Any = None, hooks: Any = None,
                       timesteps: Any = None) -> tuple[Any, Any]:
        node = "PairConditioningSetPropertiesAndCombine"
        pos, neg = _conds().set_conds_props_and_combine([positive, negative], [positive_NEW, negative_NEW],
                                                          strength, _set_cond_area(node, set_cond_area), mask,
                                                          hooks_in(node, "hooks", hooks), timesteps)
        return (pos, neg)


class ConditioningSetDefaultCombine(HookNode):
    """Append ``cond_DEFAULT`` (with hooks) as a default entry: it fills what the other entries leave uncovered."""

    DISPLAY_NAME = "Cond Set Default Combine"
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_default_and_combine"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"cond": ("CONDITIONING",), "cond_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    def set_default_and_combine(self, cond: Any, cond_DEFAULT: Any, hooks: Any = None) -> tuple[Any]:
        group = hooks_in("ConditioningSetDefaultCombine", "hooks", hooks)
        (out,) = _conds().set_default_conds_and_combine([cond], [cond_DEFAULT], group)
        return (out,)


class PairConditioningSetDefaultCombine(HookNode):
    """ConditioningSetDefaultCombine on a positive / negative pair."""

    DISPLAY_NAME = "Cond Pair Set Default Combine"
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_default_and_combine"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_DEFAULT": ("CONDITIONING",), "negative_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    def set_default_and_combine(self, positive: Any, negative: Any, positive_DEFAULT: Any, negative_DEFAULT: Any,
                                hooks: Any = None) -> tuple[Any, Any]:
        group = hooks_in("PairConditioningSetDefaultCombine", "hooks", hooks)
        pos, neg = _conds().set_default_conds_and_combine([positive, negative],
                                                            [positive_DEFAULT, negative_DEFAULT], group)
        return (pos, neg)


class PairConditioningCombine(HookNode):
    """positive_A + positive_B, negative_A + negative_B."""

    DISPLAY_NAME = "Cond Pair Combine"
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive_A": ("CONDITIONING",), "negative_A": ("CONDITIONING",),
                             "positive_B": ("CONDITIONING",), "negative_B": ("CONDITIONING",)}}

    def combine(self, positive_A: Any, negative_A: Any, positive_B: Any, negative_B: Any) -> tuple[Any, Any]:
        pos, neg = _conds().set_conds_props_and_combine([positive_A, negative_A], [positive_B, negative_B])
        return (pos, neg)


class SetClipHooks(HookNode):
    """Encode with the hooks' CLIP LoRAs (per keyframe range with ``schedule_clip``); with ``apply_to_conds``
    the encoded conds carry the hooks to the sampler."""

    DISPLAY_NAME = "Set CLIP Hooks"
    CATEGORY = "advanced/hooks/clip"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "apply_hooks"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip": ("CLIP",), "apply_to_conds": ("BOOLEAN", {"default": True}),
                             "schedule_clip": ("BOOLEAN", {"default": False})},
                "optional": {"hooks": ("HOOKS",)}}

    def apply_hooks(self, clip: Any, schedule_clip: bool, apply_to_conds: bool, hooks: Any = None) -> tuple[Any]:
        from engine.clip_handle import ClipHandle
        from engine.hooks import set_clip_hooks

        group = hooks_in("SetClipHooks", "hooks", hooks)
        if group is None:
            return (clip,)
        if not isinstance(clip, ClipHandle):
            raise input_error("SetClipHooks", "clip", f"expected CLIP, got {type(clip).__name__}")
        return (set_clip_hooks(clip, group, bool(apply_to_conds), bool(schedule_clip)),)


NODES: list[type] = [ConditioningSetProperties, ConditioningSetPropertiesAndCombine, PairConditioningSetProperties,
                     PairConditioningSetPropertiesAndCombine, ConditioningSetDefaultCombine,
                     PairConditioningSetDefaultCombine, PairConditioningCombine, SetClipHooks]
