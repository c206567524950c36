"""Model and CLIP merging nodes (ComfyUI's comfy_extras/nodes_model_merging.py and the SD1 / SD2 / SDXL block
nodes of nodes_model_merging_model_specific.py): thin adapters over `engine.merge`.

Every merge returns a clone of the first input carrying the second's weights as lazy patches, so merges
chain and compose with LoRA the way ComfyUI's do.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from nodes._base import BuiltinNode, InputTypes, input_error

if TYPE_CHECKING:
    from engine.clip_handle import ClipHandle
    from engine.handles import ModelHandle

__all__ = ["ModelMergeSimple", "ModelMergeBlocks", "ModelMergeSubtract", "ModelMergeAdd", "ModelMergeSD1",
           "ModelMergeSD2", "ModelMergeSDXL", "CLIPMergeSimple", "CLIPMergeSubtract", "CLIPMergeAdd"]

T = TypeVar("T")

_RATIO = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
_MULTIPLIER = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})
CATEGORY = "advanced/model_merging"


def _run(cls_name: str, second: str, fn: Callable[[], T]) -> T:
    """Call the engine merge; its refusal becomes an error naming the node and its second input."""
    try:
        return fn()
    except ValueError as exc:
        raise input_error(cls_name, second, str(exc)) from exc


class ModelMergeSimple(BuiltinNode):
    """Weighted average of two UNets: ``ratio * model1 + (1 - ratio) * model2`` (ratio 1 keeps model1).

    Parameters:
        model1: the base MODEL (its options and patches are kept; a clone is returned).
        model2: the MODEL whose UNet weights (with its own patches) are mixed in.
        ratio: share of model1.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "ratio": _RATIO}}

    def merge(self, model1: ModelHandle, model2: ModelHandle, ratio: float) -> tuple[ModelHandle]:
        from engine.merge import merge_simple

        return (_run(type(self).__name__, "model2", lambda: merge_simple(model1, model2, ratio)),)


class ModelMergeSubtract(BuiltinNode):
    """Difference of two UNets: ``multiplier * (model1 - model2)`` (the "add difference" ingredient).

    Parameters:
        model1, model2: the MODELs (a clone of model1 is returned).
        multiplier: scale of the difference.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "multiplier": _MULTIPLIER}}

    def merge(self, model1: ModelHandle, model2: ModelHandle, multiplier: float) -> tuple[ModelHandle]:
        from engine.merge import merge_subtract

        return (_run(type(self).__name__, "model2", lambda: merge_subtract(model1, model2, multiplier)),)


class ModelMergeAdd(BuiltinNode):
    """Sum of two UNets: ``model1 + model2`` (typically model2 is a ModelMergeSubtract difference).

    Parameters:
        model1, model2: the MODELs (a clone of model1 is returned).
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",)}}

    def merge(self, model1: ModelHandle, model2: ModelHandle) -> tuple[ModelHandle]:
        from engine.merge import merge_add

        return (_run(type(self).__name__, "model2", lambda: merge_add(model1, model2)),)


class ModelMergeBlocks(BuiltinNode):
    """Weighted average with one ratio per UNet key prefix: the longest prefix that starts a key gives its
    ratio; keys no prefix matches (``time_embed.*``) take the first ratio input, as in ComfyUI.

    Parameters:
        model1, model2: the MODELs (a clone of model1 is returned).
        input / middle / out: share of model1 for ``input_blocks.*``, ``middle_block.*``, ``out.*`` and
            ``output_blocks.*``.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "input": _RATIO, "middle": _RATIO,
                             "out": _RATIO}}

    def merge(self, model1: ModelHandle, model2: ModelHandle, **ratios: Any) -> tuple[ModelHandle]:
        from engine.merge import merge_blocks

        # the prompt's input order decides which ratio is "first" (ComfyUI passes them in that order)
        table = [(prefix, float(value)) for prefix, value in ratios.items()]
        return (_run(type(self).__name__, "model2", lambda: merge_blocks(model1, model2, table)),)


def _block_inputs(levels: int) -> InputTypes:
    """ComfyUI's per-block ratio inputs of ModelMergeSD1 (12 levels, keys end in '.') / SDXL (9, no '.')."""
    dot = "." if levels == 12 else ""
    names = ["time_embed.", "label_emb."]
    names += [f"input_blocks.{i}{dot}" for i in range(levels)]
    names += [f"middle_block.{i}{dot}" for i in range(3)]
    names += [f"output_blocks.{i}{dot}" for i in range(levels)]
    names.append("out.")
    required: dict[str, Any] = {"model1": ("MODEL",), "model2": ("MODEL",)}
    required.update({name: _RATIO for name in names})
    return {"required": required}


class ModelMergeSD1(ModelMergeBlocks):
    """ModelMergeBlocks with one ratio per SD1.x UNet block (time_embed, label_emb, 12 input, 3 middle,
    12 output blocks, out)."""

    CATEGORY = CATEGORY + "/model_specific"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return _block_inputs(12)


class ModelMergeSD2(ModelMergeSD1):
    """ModelMergeSD1 for SD2.x models (same blocks)."""


class ModelMergeSDXL(ModelMergeBlocks):
    """ModelMergeBlocks with one ratio per SDXL UNet block (9 input, 3 middle, 9 output blocks; the block
    names have no trailing dot, as in ComfyUI)."""

    CATEGORY = CATEGORY + "/model_specific"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return _block_inputs(9)


class CLIPMergeSimple(BuiltinNode):
    """Weighted average of two text encoders: ``ratio * clip1 + (1 - ratio) * clip2``.

    Parameters:
        clip1: the base CLIP (a clone is returned, keeping its clip-skip setting and patches).
        clip2: the CLIP whose weights are mixed in.
        ratio: share of clip1.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "ratio": _RATIO}}

    def merge(self, clip1: ClipHandle, clip2: ClipHandle, ratio: float) -> tuple[ClipHandle]:
        from engine.merge import clip_merge_simple

        return (_run(type(self).__name__, "clip2", lambda: clip_merge_simple(clip1, clip2, ratio)),)


class CLIPMergeSubtract(BuiltinNode):
    """Difference of two text encoders: ``multiplier * (clip1 - clip2)``.

    Parameters:
        clip1, clip2: the CLIPs (a clone of clip1 is returned).
        multiplier: scale of the difference.
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "multiplier": _MULTIPLIER}}

    def merge(self, clip1: ClipHandle, clip2: ClipHandle, multiplier: float) -> tuple[ClipHandle]:
        from engine.merge import clip_merge_subtract

        return (_run(type(self).__name__, "clip2", lambda: clip_merge_subtract(clip1, clip2, multiplier)),)


class CLIPMergeAdd(BuiltinNode):
    """Sum of two text encoders: ``clip1 + clip2``.

    Parameters:
        clip1, clip2: the CLIPs (a clone of clip1 is returned).
    """

    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",)}}

    def merge(self, clip1: ClipHandle, clip2: ClipHandle) -> tuple[ClipHandle]:
        from engine.merge import clip_merge_add

        return (_run(type(self).__name__, "clip2", lambda: clip_merge_add(clip1, clip2)),)


NODES = [ModelMergeSimple, ModelMergeBlocks, ModelMergeSubtract, ModelMergeAdd, CLIPMergeSimple, CLIPMergeSubtract,
         CLIPMergeAdd, ModelMergeSD1, ModelMergeSD2, ModelMergeSDXL]
