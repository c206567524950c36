"""Latent utility nodes (ComfyUI names): LatentCut, LatentConcat and the experimental latent operations.

LATENT_OPERATION values are callables `op(latent=tensor) -> tensor` built by `engine.latent_utils`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine import latent_utils as ops
from engine.types import latent_copy
from nodes._base import BuiltinNode, InputTypes, input_error, latent_samples
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    from engine.handles import ModelHandle
    from engine.latent_utils import LatentOperation
    from engine.types import Latent

__all__ = ["LatentCut", "LatentConcat", "LatentApplyOperation", "LatentApplyOperationCFG",
           "LatentOperationTonemapReinhard", "LatentOperationSharpen"]


class LatentConcat(BuiltinNode):
    """Join two latents along width (x), height (y) or time (t); "-" puts samples2 first."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",), "dim": (list(ops.CONCAT_DIMS),)}}

    def execute(self, samples1: Latent, samples2: Latent, dim: str) -> tuple[Latent]:
        s1 = latent_samples(samples1, "LatentConcat", "samples1")
        s2 = latent_samples(samples2, "LatentConcat", "samples2")
        try:
            joined = ops.concat(s1, s2, dim)
        except (RuntimeError, KeyError) as exc:
            raise input_error("LatentConcat", "samples2",
                              f"cannot join {tuple(s2.shape)} to {tuple(s1.shape)} along {dim!r}: {exc}") from exc
        return (latent_copy(samples1, joined),)


class LatentCut(BuiltinNode):
    """`amount` slices from `index` along x / y / t (negative index counts from the end)."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "samples": ("LATENT",),
            "dim": (list(ops.CUT_DIMS),),
            "index": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
            "amount": ("INT", {"default": 1, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
        }}

    def execute(self, samples: Latent, dim: str, index: int, amount: int) -> tuple[Latent]:
        s = latent_samples(samples, "LatentCut", "samples")
        try:
            cut = ops.cut(s, dim, index, amount)
        except (ValueError, KeyError) as exc:
            raise input_error("LatentCut", "dim", str(exc)) from exc
        return (latent_copy(samples, cut),)


class LatentApplyOperation(BuiltinNode):
    """Apply a latent operation to a latent."""

    CATEGORY = "latent/advanced/operations"
    EXPERIMENTAL = True
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "operation": ("LATENT_OPERATION",)}}

    def execute(self, samples: Latent, operation: LatentOperation) -> tuple[Latent]:
        s = latent_samples(samples, "LatentApplyOperation", "samples")
        return (latent_copy(samples, operation(latent=s)),)


class LatentApplyOperationCFG(BuiltinNode):
    """Patch the model so every sampling step applies the operation to cond - uncond before CFG."""

    CATEGORY = "latent/advanced/operations"
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "operation": ("LATENT_OPERATION",)}}

    def execute(self, model: ModelHandle, operation: LatentOperation) -> tuple[ModelHandle]:
        patched = model.clone()
        patched.set_model_sampler_pre_cfg_function(ops.cfg_pre_function(operation))
        return (patched,)


class LatentOperationTonemapReinhard(BuiltinNode):
    """Reinhard tone mapping of the latent's per-pixel magnitude."""

    CATEGORY = "latent/advanced/operations"
    EXPERIMENTAL = True
    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def execute(self, multiplier: float) -> tuple[LatentOperation]:
        return (ops.tonemap_reinhard(multiplier),)


class LatentOperationSharpen(BuiltinNode):
    """Sharpen the channel-normalised latent with a Gaussian unsharp kernel."""

    CATEGORY = "latent/advanced/operations"
    EXPERIMENTAL = True
    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "sharpen_radius": ("INT", {"default": 9, "min": 1, "max": 31, "step": 1}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            "alpha": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5.0, "step": 0.01}),
        }}

    def execute(self, sharpen_radius: int, sigma: float, alpha: float) -> tuple[LatentOperation]:
        return (ops.sharpen(sharpen_radius, sigma, alpha),)


NODES = [LatentConcat, LatentCut, LatentApplyOperation, LatentApplyOperationCFG, LatentOperationTonemapReinhard,
         LatentOperationSharpen]
