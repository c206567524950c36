"""ComfyUI's `comfy.lora` for packs: the LoRA key maps of a MODEL / CLIP, from Loom's `engine.lora`.

`model_lora_keys_unet(model, key_map)` / `model_lora_keys_clip(clip, key_map)` add `{kohya module name:
parameter name}` for every module a LoRA can patch on a Loom MODEL / CLIP handle (ComfyUI passes the inner
model; Loom's handles are passed as they are). To apply a LoRA use `comfy.sd.load_lora_for_models`;
ComfyUI's patch-dict functions (`load_lora`, `weight_decompose`, ...) are not provided, because Loom's
handles carry their LoRA patches in their own form.

`calculate_weight(patches, weight, key)` applies ComfyUI-format patch entries `(strength, value, strength_model,
offset, function)` whose value is a tensor or `("diff", (tensor,))`. While this module is loaded it is also how a
patch value of another form given to `ModelPatcher.add_patches` is applied (engine.patching's patch resolver): packs
that replace `comfy.lora.calculate_weight` to handle their own kind (inpaint-nodes' `("fooocus", ...)` patch) are
called for it, at run time, with a float32 copy of the weight.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from app.compat._environment import shim_still_loaded
from engine.lora import clip_lora_names, unet_lora_names
from engine.model_base import BaseModel
from engine.patching import add_patch_resolver

__all__ = ["model_lora_keys_clip", "model_lora_keys_unet", "calculate_weight"]

log = logging.getLogger("loom.custom_nodes")


def model_lora_keys_unet(model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """`key_map` plus `{lora_unet_<module>: <UNet parameter>}` for the MODEL handle `model` (or its `model.model`
    view, which ComfyUI's packs pass)."""
    key_map = {} if key_map is None else key_map
    handle = model.handle if isinstance(model, BaseModel) else model
    key_map.update({module: target[0] for module, target in unet_lora_names(handle).items()})
    return key_map


def model_lora_keys_clip(clip: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """`key_map` plus `{lora_te*_<module>: <text encoder parameter>}` for the CLIP handle `clip`."""
    key_map = {} if key_map is None else key_map
    key_map.update({module: target[0] for module, target in clip_lora_names(clip).items()})
    return key_map


def calculate_weight(patches: Sequence[Sequence[Any]], weight: torch.Tensor, key: str,
                     intermediate_dtype: torch.dtype = torch.float32, original_weights: Any = None) -> torch.Tensor:
    """`weight` with ComfyUI-format patch entries applied in order (in place, as ComfyUI does; returned). Only
    plain deltas (`tensor` or `("diff", (tensor,))`) are known; other kinds raise naming the kind and the key."""
    for entry in patches:
        strength, value = float(entry[0]), entry[1]
        strength_model = float(entry[2]) if len(entry) > 2 else 1.0
        if any(extra is not None for extra in entry[3:5]):
            raise NotImplementedError(f"comfy.lora.calculate_weight: {key}: patch offsets / functions are not "
                                      "provided by Loom")
        if strength_model != 1.0:
            weight *= strength_model
        if isinstance(value, torch.Tensor):
            value = ("diff", (value,))
        kind = value[0] if isinstance(value, tuple) and len(value) == 2 else type(value).__name__
        if kind != "diff":
            raise NotImplementedError(f"comfy.lora.calculate_weight: {key}: patch kind {kind!r} is not provided by "
                                      "Loom (it applies LoRAs itself: comfy.sd.load_lora_for_models)")
        delta = value[1][0]
        if strength == 0.0:
            continue
        if tuple(delta.shape) != tuple(weight.shape):
            log.warning("comfy.lora.calculate_weight: %s has shape %s, the patch %s; not merged", key,
                        tuple(weight.shape), tuple(delta.shape))
            continue
        weight += strength * delta.to(device=weight.device, dtype=intermediate_dtype).to(weight.dtype)
    return weight


def _resolve(key: str, value: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A ComfyUI-format patch value (a `(kind, data)` tuple) as a delta function run through `calculate_weight` as
    this module holds it when the weight is computed (a pack's replacement included); ComfyUI's old `(delta,)` form
    is its "diff" (AnimateDiff-Evolved's motion LoRAs)."""
    if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], torch.Tensor):
        value = ("diff", value)
    if not _loaded() or not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)):
        return None

    def delta(w: torch.Tensor) -> torch.Tensor:
        module = sys.modules.get(__name__, _THIS_MODULE)
        patched: torch.Tensor = module.calculate_weight([(1.0, value, 1.0, None, None)], w.clone(), key,
                                                        torch.float32)
        return patched - w

    return delta


def _loaded() -> bool:
    return shim_still_loaded(__name__, _THIS_MODULE, _remove_resolver)


_THIS_MODULE = sys.modules[__name__]
_remove_resolver = add_patch_resolver(_resolve)
