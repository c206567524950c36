"""Latent operations: flip, rotate, crop, blend, add / subtract / multiply / interpolate, batch join and seed
behaviour (ComfyUI names)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.image_ops import common_upscale, repeat_to_batch
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, latent_samples
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["LatentFlip", "LatentRotate", "LatentCrop", "LatentBlend", "LatentAdd", "LatentSubtract",
           "LatentMultiply", "LatentInterpolate", "LatentBatch", "LatentBatchSeedBehavior"]

_FLIPS = ["x-axis: vertically", "y-axis: horizontally"]
_ROTATIONS = ["none", "90 degrees", "180 degrees", "270 degrees"]


class LatentFlip(BuiltinNode):
    """Mirror the latent vertically (x-axis) or horizontally (y-axis)."""

    DISPLAY_NAME = "Flip Latent"
    CATEGORY = "latent/transform"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "flip_method": (list(_FLIPS),)}}

    def flip(self, samples: Latent, flip_method: str) -> tuple[Latent]:
        s = latent_samples(samples, "LatentFlip", "samples")
        if flip_method not in _FLIPS:
            raise input_error("LatentFlip", "flip_method", f"{flip_method!r} is not one of {_FLIPS}")
        out = samples.copy()
        out["samples"] = s.flip(dims=[2] if flip_method.startswith("x") else [3])
        return (out,)


class LatentRotate(BuiltinNode):
    """Rotate the latent clockwise by 90, 180 or 270 degrees."""

    DISPLAY_NAME = "Rotate Latent"
    CATEGORY = "latent/transform"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "rotation": (list(_ROTATIONS),)}}

    def rotate(self, samples: Latent, rotation: str) -> tuple[Latent]:
        import torch

        s = latent_samples(samples, "LatentRotate", "samples")
        if rotation not in _ROTATIONS:
            raise input_error("LatentRotate", "rotation", f"{rotation!r} is not one of {_ROTATIONS}")
        out = samples.copy()
        out["samples"] = torch.rot90(s, k=_ROTATIONS.index(rotation), dims=[3, 2])
        return (out,)


class LatentCrop(BuiltinNode):
    """Cut a width x height pixel window at (x, y) out of the latent (pixel values floored to latent units).

    Like ComfyUI the origin is clamped so at least 8 latent units (64 px) remain on each axis; a noise mask is
    cut at the same relative place so it keeps matching the latent.
    """

    DISPLAY_NAME = "Crop Latent"
    CATEGORY = "latent/transform"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "samples": ("LATENT",),
                "width": ("INT", {"default": 512, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "x": ("INT", dict(pos)),
                "y": ("INT", dict(pos)),
            }
        }

    def crop(self, samples: Latent, width: int, height: int, x: int, y: int) -> tuple[Latent]:
        s = latent_samples(samples, "LatentCrop", "samples")
        lh, lw = s.shape[-2], s.shape[-1]
        x0 = max(0, min(x // 8, lw - 8))
        y0 = max(0, min(y // 8, lh - 8))
        x1, y1 = min(lw, x0 + width // 8), min(lh, y0 + height // 8)
        out = samples.copy()
        out["samples"] = s[..., y0:y1, x0:x1]
        mask = samples.get("noise_mask")
        if mask is not None:
            mh, mw = mask.shape[-2], mask.shape[-1]
            out["noise_mask"] = mask[..., round(y0 * mh / lh) : round(y1 * mh / lh),
                                     round(x0 * mw / lw) : round(x1 * mw / lw)]
        return (out,)


def _match_latent(target: torch.Tensor, latent: torch.Tensor, class_name: str, input_name: str,
                  repeat_batch: bool = True) -> torch.Tensor:
    """`latent` resized (bilinear, centre crop) to `target`'s size and, optionally, repeated to its batch."""
    if latent.ndim != target.ndim or latent.shape[1] != target.shape[1]:
        raise input_error(class_name, input_name,
                          f"latent of shape {tuple(latent.shape)} cannot be combined with {tuple(target.shape)}: "
                          "the channel counts differ (latents from different model families?)")
    if latent.shape[2:] != target.shape[2:]:
        latent = common_upscale(latent, target.shape[-1], target.shape[-2], "bilinear", "center")
    return repeat_to_batch(latent, target.shape[0]) if repeat_batch else latent


class LatentBlend(BuiltinNode):
    """`samples1 * blend_factor + samples2 * (1 - blend_factor)`; samples2 resized (bicubic) to samples1."""

    DISPLAY_NAME = "Latent Blend"
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "samples1": ("LATENT",),
                "samples2": ("LATENT",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01}),
            }
        }

    def blend(self, samples1: Latent, samples2: Latent, blend_factor: float,
              blend_mode: str = "normal") -> tuple[Latent]:
        s1 = latent_samples(samples1, "LatentBlend", "samples1")
        s2 = latent_samples(samples2, "LatentBlend", "samples2").to(s1)
        if blend_mode != "normal":
            raise input_error("LatentBlend", "blend_mode", f"{blend_mode!r} is not supported; only 'normal' is")
        if s2.ndim != s1.ndim or s2.shape[1] != s1.shape[1]:
            raise input_error("LatentBlend", "samples2",
                              f"shape {tuple(s2.shape)} cannot be blended with samples1 {tuple(s1.shape)}")
        if s2.shape[2:] != s1.shape[2:]:
            s2 = common_upscale(s2, s1.shape[-1], s1.shape[-2], "bicubic", "center")
        out = samples1.copy()
        out["samples"] = s1 * blend_factor + repeat_to_batch(s2, s1.shape[0]) * (1 - blend_factor)
        return (out,)


class _LatentPair(BuiltinNode):
    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",)}}

    def _pair(self, samples1: Latent, samples2: Latent) -> tuple[torch.Tensor, torch.Tensor]:
        name = type(self).__name__
        s1 = latent_samples(samples1, name, "samples1")
        s2 = latent_samples(samples2, name, "samples2").to(s1)
        return s1, _match_latent(s1, s2, name, "samples2")


class LatentAdd(_LatentPair):
    """samples1 + samples2 (samples2 resized bilinear/centre and repeated to samples1's batch)."""

    def op(self, samples1: Latent, samples2: Latent) -> tuple[Latent]:
        s1, s2 = self._pair(samples1, samples2)
        return ({**samples1, "samples": s1 + s2},)


class LatentSubtract(_LatentPair):
    """samples1 - samples2 (samples2 resized bilinear/centre and repeated to samples1's batch)."""

    def op(self, samples1: Latent, samples2: Latent) -> tuple[Latent]:
        s1, s2 = self._pair(samples1, samples2)
        return ({**samples1, "samples": s1 - s2},)


class LatentInterpolate(_LatentPair):
    """Per pixel: directions mixed by `ratio` (1 = samples1) and re-normalised, lengths mixed linearly."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",),
                             "ratio": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def op(self, samples1: Latent, samples2: Latent, ratio: float) -> tuple[Latent]:
        import torch
        s1, s2 = self._pair(samples1, samples2)
        m1 = torch.linalg.vector_norm(s1, dim=1, keepdim=True)
        m2 = torch.linalg.vector_norm(s2, dim=1, keepdim=True)
        t = torch.nan_to_num(s1 / m1) * ratio + torch.nan_to_num(s2 / m2) * (1.0 - ratio)
        direction = torch.nan_to_num(t / torch.linalg.vector_norm(t, dim=1, keepdim=True))
        return ({**samples1, "samples": direction * (m1 * ratio + m2 * (1.0 - ratio))},)


class LatentBatch(_LatentPair):
    """samples2 appended to samples1's batch (resized to samples1); batch_index lists are concatenated."""

    CATEGORY = "latent/batch"

    def op(self, samples1: Latent, samples2: Latent) -> tuple[Latent]:
        import torch
        s1 = latent_samples(samples1, "LatentBatch", "samples1")
        s2 = _match_latent(s1, latent_samples(samples2, "LatentBatch", "samples2").to(s1), "LatentBatch", "samples2",
                           repeat_batch=False)
        out = samples1.copy()
        out["samples"] = torch.cat((s1, s2), dim=0)
        out["batch_index"] = (list(samples1.get("batch_index", range(s1.shape[0])))
                              + list(samples2.get("batch_index", range(s2.shape[0]))))
        return (out,)


class LatentMultiply(BuiltinNode):
    """samples * multiplier."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",),
                             "multiplier": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    def op(self, samples: Latent, multiplier: float) -> tuple[Latent]:
        return ({**samples, "samples": latent_samples(samples, "LatentMultiply", "samples") * multiplier},)


_SEED_BEHAVIORS = ["random", "fixed"]


class LatentBatchSeedBehavior(BuiltinNode):
    """"fixed": every item gets the first item's batch_index (same noise); "random": drop batch_index."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "seed_behavior": (list(_SEED_BEHAVIORS), {"default": "fixed"})}}

    def op(self, samples: Latent, seed_behavior: str) -> tuple[Latent]:
        s = latent_samples(samples, "LatentBatchSeedBehavior", "samples")
        if seed_behavior not in _SEED_BEHAVIORS:
            raise input_error("LatentBatchSeedBehavior", "seed_behavior",
                              f"{seed_behavior!r} is not one of {_SEED_BEHAVIORS}")
        out = samples.copy()
        if seed_behavior == "random":
            out.pop("batch_index", None)
        else:
            out["batch_index"] = [list(samples.get("batch_index", [0]))[0]] * s.shape[0]
        return (out,)


NODES = [LatentFlip, LatentRotate, LatentCrop, LatentBlend, LatentAdd, LatentSubtract, LatentMultiply,
         LatentInterpolate, LatentBatch, LatentBatchSeedBehavior]
