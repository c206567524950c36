"""Hook nodes, part 1 (ComfyUI 0.3.64 ``comfy_extras/nodes_hooks.py``: names, inputs, defaults, categories):
create LoRA / checkpoint-as-LoRA hooks, schedule them with keyframes, combine them. Values: HOOKS =
``engine.hooks.HookGroup``, HOOK_KEYFRAMES = ``engine.hooks.HookKeyframes``. Putting hooks on the CLIP and on
conditioning: ``nodes.hook_attach``; ConditioningTimestepsRange: ``nodes.guiders_extra``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from engine.names import HOOK_INTERPOLATIONS as INTERPOLATIONS
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.loaders import load_model_file

if TYPE_CHECKING:  # engine.hooks imports torch: the node classes register without it
    from engine.hooks import HookGroup, HookKeyframes

__all__ = ["NODES", "HookNode", "hooks_in"]

_log = logging.getLogger(__name__)

_STRENGTH = ("FLOAT", {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.01})
_PERCENT = {"min": 0.0, "max": 1.0, "step": 0.001}


def hooks_in(node: str, name: str, value: Any) -> HookGroup | None:
    """An optional HOOKS input; anything else is an error naming the node and input."""
    from engine.hooks import HookGroup

    if value is None or isinstance(value, HookGroup):
        return value
    raise input_error(node, name, f"expected HOOKS, got {type(value).__name__}")


def _keyframes_in(node: str, name: str, value: Any) -> HookKeyframes:
    from engine.hooks import HookKeyframes

    if value is None:
        return HookKeyframes()
    if isinstance(value, HookKeyframes):
        return value
    raise input_error(node, name, f"expected HOOK_KEYFRAMES, got {type(value).__name__}")


class HookNode(BuiltinNode):
    """Base of the hook nodes (ComfyUI marks them experimental)."""

    EXPERIMENTAL = True


# --- create ---------------------------------------------------------------------------------------------


class CreateHookLora(HookNode):
    """A HOOKS group with one LoRA (model and CLIP strengths), added after ``prev_hooks``."""

    DISPLAY_NAME = "Create Hook LoRA"
    CATEGORY = "advanced/hooks/create"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "create_hook"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"lora_name": "loras"}

    def __init__(self) -> None:
        self._loaded: tuple[str, Any] | None = None

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"lora_name": (cls._services().paths.get_filename_list("loras"),),
                             "strength_model": _STRENGTH, "strength_clip": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def _lora(self, node: str, lora_name: str) -> Any:
        from engine import lora

        def load(path: str, _manager: Any) -> tuple[str, Any]:
            if self._loaded is None or self._loaded[0] != path:
                self._loaded = (path, lora.load_lora(path))
            return self._loaded

        return load_model_file(node, self._services(), "loras", "lora_name", lora_name, load)[1]

    def create_hook(self, lora_name: str, strength_model: float, strength_clip: float,
                    prev_hooks: Any = None) -> tuple[HookGroup]:
        from engine.hooks import HookGroup, hook_lora

        _node = type(self).__name__
        given = hooks_in(_node, "prev_hooks", prev_hooks)
        prev = HookGroup() if given is None else given
        if strength_model == 0 and strength_clip == 0:
            return (prev,)
        try:
            hooks = hook_lora(self._lora(_node, lora_name), strength_model, strength_clip)
        except ValueError as exc:
            raise input_error(_node, "lora_name", f"{lora_name}: {exc}") from exc
        return (prev.combine(hooks),)


class CreateHookLoraModelOnly(CreateHookLora):
    """CreateHookLora with CLIP strength 0."""

    DISPLAY_NAME = "Create Hook LoRA (MO)"
    FUNCTION = "create_hook_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"lora_name": (cls._services().paths.get_filename_list("loras"),),
                             "strength_model": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook_model_only(self, lora_name: str, strength_model: float,
                               prev_hooks: Any = None) -> tuple[HookGroup]:
        return self.create_hook(lora_name, strength_model, 0.0, prev_hooks)


class CreateHookModelAsLora(HookNode):
    """A HOOKS group that moves the model (and CLIP) towards another checkpoint: weight + s * (other - weight)."""

    DISPLAY_NAME = "Create Hook Model as LoRA"
    CATEGORY = "advanced/hooks/create"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "create_hook"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"ckpt_name": "checkpoints"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"ckpt_name": (cls._services().paths.get_filename_list("checkpoints"),),
                             "strength_model": _STRENGTH, "strength_clip": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook(self, ckpt_name: str, strength_model: float, strength_clip: float, prev_hooks: Any = None
                    ) -> tuple[HookGroup]:
        from engine import loading
        from engine.hooks import HookGroup, hook_model_as_lora

        _node = type(self).__name__
        given = hooks_in(_node, "prev_hooks", prev_hooks)
        prev = HookGroup() if given is None else given
        services = self._services()
        embeddings = services.paths.get_folder_paths("embeddings")
        model, clip, _vae = load_model_file(
            _node, services, "checkpoints", "ckpt_name", ckpt_name,
            lambda path, manager: loading.load_checkpoint(path, manager, embeddings[0] if embeddings else None))
        return (prev.combine(hook_model_as_lora(model, clip, strength_model, strength_clip)),)


class CreateHookModelAsLoraModelOnly(CreateHookModelAsLora):
    """CreateHookModelAsLora with CLIP strength 0."""

    DISPLAY_NAME = "Create Hook Model as LoRA (MO)"
    FUNCTION = "create_hook_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"ckpt_name": (cls._services().paths.get_filename_list("checkpoints"),),
                             "strength_model": _STRENGTH},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook_model_only(self, ckpt_name: str, strength_model: float,
                               prev_hooks: Any = None) -> tuple[HookGroup]:
        return self.create_hook(ckpt_name, strength_model, 0.0, prev_hooks)


# --- scheduling -----------------------------------------------------------------------------------------


class SetHookKeyframes(HookNode):
    """Give every hook of the group the keyframe schedule (one shared copy)."""

    DISPLAY_NAME = "Set Hook Keyframes"
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "set_hook_keyframes"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"hooks": ("HOOKS",)}, "optional": {"hook_kf": ("HOOK_KEYFRAMES",)}}

    def set_hook_keyframes(self, hooks: Any, hook_kf: Any = None) -> tuple[HookGroup]:
        group = hooks_in("SetHookKeyframes", "hooks", hooks)
        if group is None:
            raise input_error("SetHookKeyframes", "hooks", "HOOKS is required")
        if hook_kf is None:
            return (group,)
        return (group.with_keyframes(_keyframes_in("SetHookKeyframes", "hook_kf", hook_kf)),)


class CreateHookKeyframe(HookNode):
    """Add a keyframe: from ``start_percent`` of the schedule on, hooks apply at ``strength_mult`` x."""

    DISPLAY_NAME = "Create Hook Keyframe"
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframe"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"strength_mult": ("FLOAT", {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.01}),
                             "start_percent": ("FLOAT", {"default": 0.0, **_PERCENT})},
                "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframe(self, strength_mult: float, start_percent: float,
                             prev_hook_kf: Any = None) -> tuple[HookKeyframes]:
        from engine.hooks import HookKeyframe

        prev = _keyframes_in("CreateHookKeyframe", "prev_hook_kf", prev_hook_kf)
        return (prev.add(HookKeyframe(float(strength_mult), float(start_percent))),)


def _add_series(prev: HookKeyframes, percents: list[float], strengths: list[float],
                print_keyframes: bool) -> HookKeyframes:
    """Keyframes at ``percents`` with ``strengths``; the first guarantees one step, the rest none."""
    from engine.hooks import HookKeyframe

    out = prev
    for i, (percent, strength) in enumerate(zip(percents, strengths, strict=True)):
        out = out.add(HookKeyframe(float(strength), percent, guarantee_steps=1 if i == 0 else 0))
        if print_keyframes:
            _log.info("Hook Keyframe - start_percent:%s = %s", percent, strength)
    return out


class CreateHookKeyframesInterpolated(HookNode):
    """``keyframes_count`` keyframes evenly spaced from start to end percent, strengths interpolated."""

    DISPLAY_NAME = "Create Hook Keyframes Interp."
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframes"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        strength = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}
        return {"required": {"strength_start": ("FLOAT", dict(strength)), "strength_end": ("FLOAT", dict(strength)),
                             "interpolation": (list(INTERPOLATIONS),),
                             "start_percent": ("FLOAT", {"default": 0.0, **_PERCENT}),
                             "end_percent": ("FLOAT", {"default": 1.0, **_PERCENT}),
                             "keyframes_count": ("INT", {"default": 5, "min": 2, "max": 100, "step": 1}),
                             "print_keyframes": ("BOOLEAN", {"default": False})},
                "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframes(self, strength_start: float, strength_end: float, interpolation: str,
                              start_percent: float, end_percent: float, keyframes_count: int,
                              print_keyframes: bool = False, prev_hook_kf: Any = None) -> tuple[HookKeyframes]:
        node = "CreateHookKeyframesInterpolated"
        if interpolation not in INTERPOLATIONS:
            raise input_error(node, "interpolation", f"must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        from engine.hooks import interpolate

        prev = _keyframes_in(node, "prev_hook_kf", prev_hook_kf)
        percents = interpolate(start_percent, end_percent, keyframes_count, "linear")
        strengths = interpolate(strength_start, strength_end, keyframes_count, interpolation)
        return (_add_series(prev, percents, strengths, print_keyframes),)


class CreateHookKeyframesFromFloats(HookNode):
    """One keyframe per value of ``floats_strength``, evenly spaced from start to end percent."""

    DISPLAY_NAME = "Create Hook Keyframes From Floats"
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframes"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"floats_strength": ("FLOATS", {"default": -1, "min": -1, "step": 0.001,
                                                            "forceInput": True}),
                             "start_percent": ("FLOAT", {"default": 0.0, **_PERCENT}),
                             "end_percent": ("FLOAT", {"default": 1.0, **_PERCENT}),
                             "print_keyframes": ("BOOLEAN", {"default": False})},
                "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframes(self, floats_strength: Any, start_percent: float, end_percent: float,
                              prev_hook_kf: Any = None, print_keyframes: bool = False) -> tuple[HookKeyframes]:
        node = "CreateHookKeyframesFromFloats"
        if isinstance(floats_strength, (int, float)):
            values = [float(floats_strength)]
        elif isinstance(floats_strength, Iterable) and not isinstance(floats_strength, (str, bytes)):
            values = [float(v) for v in floats_strength]
        else:
            raise input_error(node, "floats_strength",
                              f"expected a float or a list of floats, got {type(floats_strength).__name__}")
        from engine.hooks import interpolate

        prev = _keyframes_in(node, "prev_hook_kf", prev_hook_kf)
        if not values:
            return (prev,)
        percents = interpolate(start_percent, end_percent, len(values), "linear")
        return (_add_series(prev, percents, values, print_keyframes),)


# --- combine --------------------------------------------------------------------------------------------


class _CombineHooks(HookNode):
    CATEGORY = "advanced/hooks/combine"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "combine_hooks"
    LETTERS: ClassVar[str] = "AB"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {}, "optional": {f"hooks_{c}": ("HOOKS",) for c in cls.LETTERS}}

    def combine_hooks(self, **hooks: Any) -> tuple[HookGroup | None]:
        from engine.hooks import combine_hooks

        node = type(self).__name__
        groups = [hooks_in(node, f"hooks_{c}", hooks.get(f"hooks_{c}")) for c in self.LETTERS]
        return (combine_hooks(groups),)


class CombineHooks2(_CombineHooks):
    """Combine up to two HOOKS groups (None when none is connected)."""

    DISPLAY_NAME = "Combine Hooks [2]"


class CombineHooks4(_CombineHooks):
    """Combine up to four HOOKS groups."""

    DISPLAY_NAME = "Combine Hooks [4]"
    LETTERS = "ABCD"


class CombineHooks8(_CombineHooks):
    """Combine up to eight HOOKS groups."""

    DISPLAY_NAME = "Combine Hooks [8]"
    LETTERS = "ABCDEFGH"


NODES: list[type] = [CreateHookLora, CreateHookLoraModelOnly, CreateHookModelAsLora, CreateHookModelAsLoraModelOnly,
                     SetHookKeyframes, CreateHookKeyframe, CreateHookKeyframesInterpolated,
                     CreateHookKeyframesFromFloats, CombineHooks2, CombineHooks4, CombineHooks8]
