"""ComfyUI's `comfy.hooks` for packs: the hook classes packs name in signatures and type checks (`HookGroup`,
`Hook`, `WrapperHook`, `WeightHook`, `ObjectPatchHook`, `AdditionalModelsHook`, `TransformerOptionsHook`).

Loom does not run ComfyUI's hook system (hooks registered on conds and controls, keyframed hook weights), so the
classes exist and building one raises, naming the class: a node that needs hooks fails with that message rather
than running without them. The module accepts attributes packs store on it (AnimateDiff-Evolved's and
Advanced-ControlNet's shared `__DINKLINK` registry). Loom's own hook nodes keep their own implementation
(`engine.sampling.hook_run`)."""
from __future__ import annotations

from typing import Any

__all__ = ["AdditionalModelsHook", "Hook", "HookGroup", "ObjectPatchHook", "TransformerOptionsHook", "WeightHook",
           "WrapperHook"]


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
