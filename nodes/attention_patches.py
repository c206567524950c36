"""UNet / attention patch nodes (ComfyUI 0.3.64 names, inputs, defaults and categories): FreeU, FreeU_V2,
PerturbedAttentionGuidance, SelfAttentionGuidance, HyperTile, PatchModelAddDownscale, TomePatchModel and the
attention-multiply nodes. Each clones its MODEL (or CLIP) and adds patches through the handle's ComfyUI setters;
the patch maths lives in `engine.patches`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_sampling import _model_in

if TYPE_CHECKING:
    from engine.clip_handle import ClipHandle
    from engine.handles import ModelHandle

__all__ = ["NODES"]

_RESIZE_METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]  # engine.patches.deep_shrink


def _float(default: float, lo: float, hi: float, step: float = 0.01, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra})


class _ModelPatch(BuiltinNode):
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"


class FreeU(_ModelPatch):
    """FreeU: amplify the decoder's backbone features (b1 at 4x, b2 at 2x the base width) and damp the low
    frequencies of the skips (s1, s2)."""

    CATEGORY = "model_patches/unet"
    _DEFAULTS = (1.1, 1.2, 0.9, 0.2)
    _VERSION = 1

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        b1, b2, s1, s2 = cls._DEFAULTS
        return {"required": {"model": ("MODEL",), "b1": _float(b1, 0.0, 10.0), "b2": _float(b2, 0.0, 10.0),
                             "s1": _float(s1, 0.0, 10.0), "s2": _float(s2, 0.0, 10.0)}}

    def patch(self, model: Any, b1: float, b2: float, s1: float, s2: float) -> tuple[ModelHandle]:
        from engine.patches.freeu import FreeUPatch

        node = type(self).__name__
        m = _model_in(node, model).clone()
        channels = getattr(getattr(getattr(m, "diffusion_model", None), "config", None), "model_channels", None)
        if not isinstance(channels, int):
            raise input_error(node, "model", "FreeU needs a UNet model (SD1.x / SD2.x / SDXL); this model has no "
                                             "UNet model_channels")
        m.set_model_output_block_patch(FreeUPatch(channels, float(b1), float(b2), float(s1), float(s2),
                                                  self._VERSION))
        return (m,)


class FreeU_V2(FreeU):  # noqa: N801 (ComfyUI's node id)
    """FreeU v2: the backbone factor weighted by each sample's normalised channel-mean map."""

    _DEFAULTS = (1.3, 1.4, 0.9, 0.2)
    _VERSION = 2


class PerturbedAttentionGuidance(_ModelPatch):
    """Perturbed-Attention Guidance: push away from a positive prediction whose middle-block self-attention is
    replaced by the identity (one more model call per step)."""

    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "scale": _float(3.0, 0.0, 100.0, round=0.01)}}

    def patch(self, model: Any, scale: float) -> tuple[ModelHandle]:
        from engine.patches.attention_guidance import PerturbedAttentionGuidance as Pag

        m = _model_in("PerturbedAttentionGuidance", model).clone()
        m.set_model_sampler_post_cfg_function(Pag(float(scale)))
        return (m,)


class SelfAttentionGuidance(_ModelPatch):
    """Self-Attention Guidance: blur the negative prediction where the middle block attends most, predict it again
    and push away from that (one more model call per step)."""

    DISPLAY_NAME = "Self-Attention Guidance"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "scale": _float(0.5, -2.0, 5.0),
                             "blur_sigma": _float(2.0, 0.0, 10.0, 0.1)}}

    def patch(self, model: Any, scale: float, blur_sigma: float) -> tuple[ModelHandle]:
        from engine.patches.attention_guidance import SelfAttentionGuidance as Sag

        m = _model_in("SelfAttentionGuidance", model).clone()
        sag = Sag(float(scale), float(blur_sigma))
        m.set_model_sampler_post_cfg_function(sag.post_cfg, disable_cfg1_optimization=True)
        m.set_model_attn1_replace(sag.record, "middle", 0, 0)
        return (m,)


class HyperTile(_ModelPatch):
    """HyperTile: self-attention over tiles of the top UNet levels (faster at large sizes)."""

    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",),
                             "tile_size": ("INT", {"default": 256, "min": 1, "max": 2048}),
                             "swap_size": ("INT", {"default": 2, "min": 1, "max": 128}),
                             "max_depth": ("INT", {"default": 0, "min": 0, "max": 10}),
                             "scale_depth": ("BOOLEAN", {"default": False})}}

    def patch(self, model: Any, tile_size: int, swap_size: int, max_depth: int,
              scale_depth: bool) -> tuple[ModelHandle]:
        from engine.patches.hypertile import HyperTilePatch

        m = _model_in("HyperTile", model).clone()
        tiles = HyperTilePatch(int(tile_size), int(swap_size), int(max_depth), bool(scale_depth))
        m.set_model_attn1_patch(tiles.tile_in)
        m.set_model_attn1_output_patch(tiles.tile_out)
        return (m,)


class PatchModelAddDownscale(_ModelPatch):
    """Kohya Deep Shrink: downscale the features after one input block while sigma is in the start..end window,
    upscale them back to each skip's size in the decoder."""

    DISPLAY_NAME = "PatchModelAddDownscale (Kohya Deep Shrink)"
    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",),
                             "block_number": ("INT", {"default": 3, "min": 1, "max": 32, "step": 1}),
                             "downscale_factor": _float(2.0, 0.1, 9.0, 0.001),
                             "start_percent": _float(0.0, 0.0, 1.0, 0.001),
                             "end_percent": _float(0.35, 0.0, 1.0, 0.001),
                             "downscale_after_skip": ("BOOLEAN", {"default": True}),
                             "downscale_method": (list(_RESIZE_METHODS),),
                             "upscale_method": (list(_RESIZE_METHODS),)}}

    def patch(self, model: Any, block_number: int, downscale_factor: float, start_percent: float,
              end_percent: float, downscale_after_skip: bool, downscale_method: str,
              upscale_method: str) -> tuple[ModelHandle]:
        from engine.patches.deep_shrink import DownscaleInput, UpscaleToSkip

        node = "PatchModelAddDownscale"
        for name, method in (("downscale_method", downscale_method), ("upscale_method", upscale_method)):
            if method not in _RESIZE_METHODS:
                raise input_error(node, name, f"expected one of {', '.join(_RESIZE_METHODS)}, got {method!r}")
        m = _model_in(node, model).clone()
        ms = m.model_sampling
        down = DownscaleInput(int(block_number), float(downscale_factor), float(ms.percent_to_sigma(start_percent)),
                              float(ms.percent_to_sigma(end_percent)), downscale_method)
        if downscale_after_skip:
            m.set_model_input_block_patch_after_skip(down)
        else:
            m.set_model_input_block_patch(down)
        m.set_model_output_block_patch(UpscaleToSkip(upscale_method))
        return (m,)


class TomePatchModel(_ModelPatch):
    """Token merging: merge the ratio share of most similar top-level self-attention queries (faster, softer)."""

    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "ratio": _float(0.3, 0.0, 1.0)}}

    def patch(self, model: Any, ratio: float) -> tuple[ModelHandle]:
        from engine.patches.tome import TomePatch

        m = _model_in("TomePatchModel", model).clone()
        tome = TomePatch(float(ratio))
        m.set_model_attn1_patch(tome.merge_in)
        m.set_model_attn1_output_patch(tome.unmerge_out)
        return (m,)


_MULTIPLIER = _float(1.0, 0.0, 10.0)


class UNetSelfAttentionMultiply(_ModelPatch):
    """Multiply the UNet's self-attention (attn1) q / k / v / out projection weights."""

    CATEGORY = "_for_testing/attention_experiments"
    EXPERIMENTAL = True
    _ATTN = "attn1"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "q": _MULTIPLIER, "k": _MULTIPLIER, "v": _MULTIPLIER,
                             "out": _MULTIPLIER}}

    def patch(self, model: Any, q: float, k: float, v: float, out: float) -> tuple[ModelHandle]:
        from engine.patches.weights import apply_weight_scales, unet_attention_scales

        m = _model_in(type(self).__name__, model).clone()
        names = [n for n, _ in m.diffusion_model.named_parameters()]
        apply_weight_scales(m, unet_attention_scales(names, self._ATTN, float(q), float(k), float(v), float(out)))
        return (m,)


class UNetCrossAttentionMultiply(UNetSelfAttentionMultiply):
    """Multiply the UNet's cross-attention (attn2) q / k / v / out projection weights."""

    _ATTN = "attn2"


class CLIPAttentionMultiply(BuiltinNode):
    """Multiply the text encoder's self-attention q / k / v / out projection weights."""

    CATEGORY = "_for_testing/attention_experiments"
    EXPERIMENTAL = True
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip": ("CLIP",), "q": _MULTIPLIER, "k": _MULTIPLIER, "v": _MULTIPLIER,
                             "out": _MULTIPLIER}}

    def patch(self, clip: Any, q: float, k: float, v: float, out: float) -> tuple[ClipHandle]:
        from engine.clip_handle import ClipHandle
        from engine.patches.weights import apply_weight_scales, clip_attention_scales

        if not isinstance(clip, ClipHandle):
            raise input_error("CLIPAttentionMultiply", "clip",
                              f"expected a CLIP (connect a loader's CLIP output), got {type(clip).__name__}")
        c = clip.clone()
        names = [n for n, _ in c.encoders.named_parameters()]
        apply_weight_scales(c, clip_attention_scales(names, float(q), float(k), float(v), float(out)))
        return (c,)


class UNetTemporalAttentionMultiply(_ModelPatch):
    """Multiply the UNet's attention output projections, spatial and temporal (video UNets) ones apart."""

    CATEGORY = "_for_testing/attention_experiments"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "self_structural": _MULTIPLIER, "self_temporal": _MULTIPLIER,
                             "cross_structural": _MULTIPLIER, "cross_temporal": _MULTIPLIER}}

    def patch(self, model: Any, self_structural: float, self_temporal: float, cross_structural: float,
              cross_temporal: float) -> tuple[ModelHandle]:
        from engine.patches.weights import apply_weight_scales, temporal_attention_scales

        m = _model_in("UNetTemporalAttentionMultiply", model).clone()
        names = [n for n, _ in m.diffusion_model.named_parameters()]
        apply_weight_scales(m, temporal_attention_scales(names, float(self_structural), float(self_temporal),
                                                         float(cross_structural), float(cross_temporal)))
        return (m,)


NODES: list[type] = [FreeU, FreeU_V2, PerturbedAttentionGuidance, SelfAttentionGuidance, HyperTile,
                     PatchModelAddDownscale, TomePatchModel, UNetSelfAttentionMultiply, UNetCrossAttentionMultiply,
                     CLIPAttentionMultiply, UNetTemporalAttentionMultiply]
