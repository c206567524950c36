"""ComfyUI's `comfy.model_patcher` for packs: `ModelPatcher` is Loom's MODEL handle class (for isinstance
checks, `.clone()` and the sampler-hook setters such as `set_model_sampler_cfg_function`), plus the
module-level `model_options` helpers (cfg hooks and block replacement); other patching APIs beyond the handle's own
are not provided."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.handles import ModelHandle as ModelPatcher

__all__ = ["ModelPatcher", "set_model_options_patch_replace", "set_model_options_post_cfg_function",
           "set_model_options_pre_cfg_function"]


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
    """Put a replacement patch into ``transformer_options["patches_replace"][name]`` under ``(block_name, number)``
    (plus ``transformer_index``); returned as in ComfyUI.

    The nested dicts are copied, so option dicts shared with other handles are not changed. ``name`` "attn1" /
    "attn2" replaces a UNet attention (engine/networks/attention.py); "dit" with ``("double_block", i)`` /
    ``("single_block", i)`` replaces a block of the SD3 / Flux transformers (skip-layer guidance).
    """
    transformer = dict(model_options.get("transformer_options") or {})
    tables = dict(transformer.get("patches_replace") or {})
    table = dict(tables.get(name) or {})
    table[(block_name, number) if transformer_index is None else (block_name, number, transformer_index)] = patch
    tables[name] = table
    transformer["patches_replace"] = tables
    model_options["transformer_options"] = transformer
    return model_options
