"""ComfyUI's `comfy.lora` for packs: the LoRA key maps of a MODEL / CLIP, from Loom's `engine.lora`.

`model_lora_keys_unet(model, key_map)` / `model_lora_keys_clip(clip, key_map)` add `{kohya module name:
parameter name}` for every module a LoRA can patch on a Loom MODEL / CLIP handle (ComfyUI passes the inner
model; Loom's handles are passed as they are). To apply a LoRA use `comfy.sd.load_lora_for_models`;
ComfyUI's patch-dict functions (`load_lora`, `weight_decompose`, ...) are not provided, because Loom's
handles carry their LoRA patches in their own form.
"""
from __future__ import annotations

from typing import Any

from engine.lora import clip_lora_names, unet_lora_names

__all__ = ["model_lora_keys_clip", "model_lora_keys_unet"]


def model_lora_keys_unet(model: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """`key_map` plus `{lora_unet_<module>: <UNet parameter>}` for the MODEL handle `model`."""
    key_map = {} if key_map is None else key_map
    key_map.update({module: target[0] for module, target in unet_lora_names(model).items()})
    return key_map


def model_lora_keys_clip(clip: Any, key_map: dict[str, str] | None = None) -> dict[str, str]:
    """`key_map` plus `{lora_te*_<module>: <text encoder parameter>}` for the CLIP handle `clip`."""
    key_map = {} if key_map is None else key_map
    key_map.update({module: target[0] for module, target in clip_lora_names(clip).items()})
    return key_map
