"""ComfyUI's `comfy.model_patcher` for packs: `ModelPatcher` is Loom's MODEL handle class (for isinstance
checks, `.clone()`, the sampler-hook and UNet-patch setters such as `set_model_sampler_cfg_function`; packs subclass
it), every Loom patcher is an instance of it, and `ModelPatcher(model, load_device, offload_device)` wraps any module
(`engine.module_patcher.ModulePatcher`: AnimateDiff-Evolved's motion modules); plus the module-level `model_options`
helpers (cfg hooks and block replacement: UNet attention, SD3 / Flux "dit" blocks)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from comfy.patcher_extension import CallbacksMP, PatcherInjection, WrappersMP, copy_nested_dicts

from engine.handles import ModelHandle
from engine.module_patcher import ModulePatcher

__all__ = ["ModelPatcher", "set_model_options_patch_replace", "set_model_options_post_cfg_function",
           "set_model_options_pre_cfg_function", "create_model_options_clone", "CallbacksMP", "PatcherInjection",
           "WrappersMP"]


class _PatcherType(type):
    """``ModelPatcher``'s type: ``isinstance`` / ``issubclass`` hold for every Loom patcher (MODEL handles and module
    patchers), and calling ``ModelPatcher(model, load_device, offload_device)`` builds a module patcher."""

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls is ModelPatcher:
            return isinstance(instance, ModulePatcher)
        return super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        if cls is ModelPatcher:
            return issubclass(subclass, ModulePatcher)
        return super().__subclasscheck__(subclass)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is not ModelPatcher:
            raise NotImplementedError(f"{cls.__name__}(...): Loom builds ComfyUI's ModelPatcher over a module, not "
                                      "a pack's subclass of it")
        return ModulePatcher(*args, **kwargs)


class ModelPatcher(ModelHandle, metaclass=_PatcherType):
    """ComfyUI's ModelPatcher: a Loom MODEL handle class (packs subclass it and re-class handles as their subclass:
    GGUF), which every Loom patcher is an instance of; ``ModelPatcher(model, load_device, offload_device)`` is
    ``engine.module_patcher.ModulePatcher`` over any module."""


def create_model_options_clone(orig_model_options: dict[str, Any]) -> dict[str, Any]:
    """A copy of a `model_options` dict whose nested dicts are copied (what `ModelPatcher.clone()` does with it)."""
    copied: dict[str, Any] = copy_nested_dicts(orig_model_options)
    return copied


def _append(model_options: dict[str, Any], key: str, fn: Callable[..., Any],
            disable_cfg1_optimization: bool) -> dict[str, Any]:
    model_options[key] = list(model_options.get(key, [])) + [fn]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def set_model_options_post_cfg_function(model_options: dict[str, Any], post_cfg_function: Callable[..., Any],
                                        disable_cfg1_optimization: bool = False) -> dict[str, Any]:
    """Append a post-CFG function to a `model_options` dict (returned, as in ComfyUI)."""
    return _append(model_options, "sampler_post_cfg_function", post_cfg_function, disable_cfg1_optimization)


def set_model_options_pre_cfg_function(model_options: dict[str, Any], pre_cfg_function: Callable[..., Any],
                                       disable_cfg1_optimization: bool = False) -> dict[str, Any]:
    """Append a pre-CFG function to a `model_options` dict (returned, as in ComfyUI)."""
    return _append(model_options, "sampler_pre_cfg_function", pre_cfg_function, disable_cfg1_optimization)


def set_model_options_patch_replace(model_options: dict[str, Any], patch: Callable[..., Any], name: str,
                                    block_name: str, number: int, transformer_index: int | None = None
                                    ) -> dict[str, Any]:
    """Replace the ``name`` ("attn1" / "attn2") attention of one UNet block (and transformer) with ``patch`` in
    ``model_options`` (returned, as in ComfyUI): its ``transformer_options`` dicts are copied, not modified, so
    a copy of ``model_options`` made before the call keeps the old table (semantics:
    ``engine.networks.attention.patched_block_forward``). ``name`` "dit" with ``("double_block", i)`` /
    ``("single_block", i)`` replaces a block of the SD3 / Flux transformers (skip-layer guidance)."""
    from engine.patches.options import with_patch_replace

    replaced = with_patch_replace(model_options, patch, name, block_name, number, transformer_index)
    model_options["transformer_options"] = replaced["transformer_options"]
    return model_options
