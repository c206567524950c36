"""Model and CLIP merging with ComfyUI's semantics (comfy_extras/nodes_model_merging.py), as lazy patches.

Every merge clones the first handle and adds, for each weight the second handle shares with it, one patch
entry ``(strength_patch, other's patched weight, strength_model)`` (engine.patching): the weight becomes
``strength_model * W1 + strength_patch * W2`` when the handle runs. W1 includes the first handle's earlier
patches (a LoRA, an earlier merge) and W2 the second's, exactly as ComfyUI's ``add_patches`` /
``get_key_patches`` compose; nothing is copied at merge time.

* simple, ratio r:          r * W1 + (1 - r) * W2   (r = 1 keeps model1)
* add:                      W1 + W2
* subtract, multiplier m:   m * W1 - m * W2
* blocks, (prefix, r) list: simple with r from the longest prefix of the UNet key that matches; a key no
  prefix matches takes the first ratio given (ComfyUI's ``next(iter(kwargs.values()))``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from engine.clip_handle import ClipHandle
from engine.handles import ModelHandle
from engine.patching import Patch, Patchable

__all__ = ["merge_simple", "merge_add", "merge_subtract", "merge_blocks", "block_ratio", "clip_merge_simple",
           "clip_merge_add", "clip_merge_subtract", "UNET_KEY_PREFIX", "CLIP_SKIPPED_SUFFIXES"]

H = TypeVar("H", ModelHandle, ClipHandle)

UNET_KEY_PREFIX = "diffusion_model."
# CLIP entries ComfyUI never merges (they are not weights of the text model)
CLIP_SKIPPED_SUFFIXES = (".position_ids", ".logit_scale")

Strengths = Callable[[str], tuple[float, float]]


def _merge(first: H, second: Patchable, strengths: Strengths, filter_prefix: str | None,
           skip: tuple[str, ...] = ()) -> H:
    """A clone of ``first`` carrying ``second``'s weights as patches, ``strengths(key)`` = (patch, model)."""
    if type(first) is not type(second):
        raise ValueError(f"cannot merge a {type(second).__name__} into a {type(first).__name__}")
    merged = first.clone()
    groups: dict[tuple[float, float], dict[str, Patch]] = {}
    for key, patch in second.get_key_patches(filter_prefix).items():
        if key.endswith(skip):
            continue
        groups.setdefault(strengths(key), {})[key] = patch
    matched = 0
    for (strength_patch, strength_model), patches in groups.items():
        matched += len(merged.add_patches(patches, strength_patch, strength_model))
    if groups and matched == 0:
        raise ValueError("the two models share no weight names (different model families?); nothing to merge")
    return merged


def _constant(strength_patch: float, strength_model: float) -> Strengths:
    return lambda _key: (strength_patch, strength_model)


def merge_simple(model1: H, model2: Patchable, ratio: float) -> H:
    """ModelMergeSimple: ``ratio * model1 + (1 - ratio) * model2`` on the UNet weights."""
    return _merge(model1, model2, _constant(1.0 - ratio, ratio), UNET_KEY_PREFIX)


def merge_add(model1: H, model2: Patchable) -> H:
    """ModelMergeAdd: ``model1 + model2`` on the UNet weights."""
    return _merge(model1, model2, _constant(1.0, 1.0), UNET_KEY_PREFIX)


def merge_subtract(model1: H, model2: Patchable, multiplier: float) -> H:
    """ModelMergeSubtract: ``multiplier * (model1 - model2)`` on the UNet weights."""
    return _merge(model1, model2, _constant(-multiplier, multiplier), UNET_KEY_PREFIX)


def block_ratio(unet_key: str, ratios: Sequence[tuple[str, float]]) -> float:
    """The ratio of the longest prefix in ``ratios`` that starts ``unet_key``; the first ratio if none does."""
    if not ratios:
        raise ValueError("block merge needs at least one (prefix, ratio)")
    ratio, longest = ratios[0][1], 0
    for prefix, value in ratios:
        if unet_key.startswith(prefix) and len(prefix) > longest:
            ratio, longest = value, len(prefix)
    return ratio


def merge_blocks(model1: H, model2: Patchable, ratios: Sequence[tuple[str, float]]) -> H:
    """ModelMergeBlocks / ModelMergeSD1 / SDXL: a simple merge whose ratio depends on the UNet key's block."""
    def strengths(key: str) -> tuple[float, float]:
        r = block_ratio(key[len(UNET_KEY_PREFIX):], ratios)
        return 1.0 - r, r

    if not ratios:
        raise ValueError("block merge needs at least one (prefix, ratio)")
    return _merge(model1, model2, strengths, UNET_KEY_PREFIX)


def clip_merge_simple(clip1: H, clip2: Patchable, ratio: float) -> H:
    """CLIPMergeSimple: ``ratio * clip1 + (1 - ratio) * clip2`` on the text-encoder weights."""
    return _merge(clip1, clip2, _constant(1.0 - ratio, ratio), None, CLIP_SKIPPED_SUFFIXES)


def clip_merge_add(clip1: H, clip2: Patchable) -> H:
    """CLIPMergeAdd: ``clip1 + clip2``."""
    return _merge(clip1, clip2, _constant(1.0, 1.0), None, CLIP_SKIPPED_SUFFIXES)


def clip_merge_subtract(clip1: H, clip2: Patchable, multiplier: float) -> H:
    """CLIPMergeSubtract: ``multiplier * (clip1 - clip2)``."""
    return _merge(clip1, clip2, _constant(-multiplier, multiplier), None, CLIP_SKIPPED_SUFFIXES)
