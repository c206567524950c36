"""Latent nodes: empty latent, upscale, batch slicing, composite, noise mask, crop, blend, maths (ComfyUI names)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, input_error
from nodes._ops import common_upscale, paste, repeat_to_batch, reshape_mask_nchw
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch", "RepeatLatentBatch",
           "LatentComposite", "SetLatentNoiseMask", "LatentCrop", "LatentBlend", "LatentAdd", "LatentSubtract",
           "LatentMultiply", "LatentInterpolate", "LatentBatch", "LatentBatchSeedBehavior"]

LATENT_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]
LatentDict = dict[str, Any]


def _samples(latent: Any, class_name: str, input_name: str) -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise input_error(class_name, input_name,
                          f"expected a LATENT dict with 'samples', got {type(latent).__name__}")
    samples: torch.Tensor = latent["samples"]
    return samples


class EmptyLatentImage(BuiltinNode):
    """Zeros `[batch, 4, height//8, width//8]`."""

    DISPLAY_NAME = "Empty Latent Image"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[LatentDict]:
        import torch
        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class LatentUpscale(BuiltinNode):
    """Resize a latent to a pixel size (each side at least 64 px; a zero side keeps the aspect)."""

    DISPLAY_NAME = "Upscale Latent"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "crop": (CROP_METHODS,),
            }
        }

    def upscale(self, samples: LatentDict, upscale_method: str, width: int, height: int,
                crop: str) -> tuple[LatentDict]:
        x = _samples(samples, "LatentUpscale", "samples")
        if width == 0 and height == 0:
            return (samples,)
        if width == 0:
            height = max(64, height)
            width = max(64, round(x.shape[-1] * height / x.shape[-2]))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(x.shape[-2] * width / x.shape[-1]))
        else:
            width, height = max(64, width), max(64, height)
        out = dict(samples)
        out["samples"] = common_upscale(x, width // 8, height // 8, upscale_method, crop)
        return (out,)


class LatentUpscaleBy(BuiltinNode):
    """Resize a latent by a factor."""

    DISPLAY_NAME = "Upscale Latent By"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    def upscale(self, samples: LatentDict, upscale_method: str, scale_by: float) -> tuple[LatentDict]:
        x = _samples(samples, "LatentUpscaleBy", "samples")
        width = round(x.shape[-1] * scale_by)
        height = round(x.shape[-2] * scale_by)
        out = dict(samples)
        out["samples"] = common_upscale(x, width, height, upscale_method, "disabled")
        return (out,)


def _masks_for_batch(masks: torch.Tensor, batch: int) -> torch.Tensor:
    return repeat_to_batch(masks, batch) if masks.shape[0] < batch else masks


class LatentFromBatch(BuiltinNode):
    """Slice `length` latents from `batch_index`, remembering their batch slots for the noise."""

    DISPLAY_NAME = "Latent From Batch"
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples": ("LATENT",),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                "length": ("INT", {"default": 1, "min": 1, "max": 64}),
            }
        }

    def frombatch(self, samples: LatentDict, batch_index: int, length: int) -> tuple[LatentDict]:
        x = _samples(samples, "LatentFromBatch", "samples")
        out = dict(samples)
        batch_index = min(x.shape[0] - 1, batch_index)
        length = min(x.shape[0] - batch_index, length)
        out["samples"] = x[batch_index : batch_index + length].clone()
        if "noise_mask" in samples:
            masks = samples["noise_mask"]
            if masks.shape[0] == 1:
                out["noise_mask"] = masks.clone()
            else:
                out["noise_mask"] = _masks_for_batch(masks, x.shape[0])[batch_index : batch_index + length].clone()
        if "batch_index" in samples:
            out["batch_index"] = list(samples["batch_index"][batch_index : batch_index + length])
        else:
            out["batch_index"] = list(range(batch_index, batch_index + length))
        return (out,)


class RepeatLatentBatch(BuiltinNode):
    """Repeat the latent batch `amount` times."""

    DISPLAY_NAME = "Repeat Latent Batch"
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def repeat(self, samples: LatentDict, amount: int) -> tuple[LatentDict]:
        x = _samples(samples, "RepeatLatentBatch", "samples")
        out = dict(samples)
        out["samples"] = x.repeat((amount, 1, 1, 1))
        if "noise_mask" in samples and samples["noise_mask"].shape[0] > 1:
            masks = _masks_for_batch(samples["noise_mask"], x.shape[0])
            out["noise_mask"] = masks.repeat((amount, *([1] * (masks.ndim - 1))))
        if "batch_index" in samples:
            idx = list(samples["batch_index"])
            offset = max(idx) - min(idx) + 1
            out["batch_index"] = idx + [i + r * offset for r in range(1, amount) for i in idx]
        return (out,)


class LatentComposite(BuiltinNode):
    """Paste `samples_from` into `samples_to` at (x, y) pixels, optionally feathered."""

    DISPLAY_NAME = "Latent Composite"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "samples_to": ("LATENT",),
                "samples_from": ("LATENT",),
                "x": ("INT", dict(pos)),
                "y": ("INT", dict(pos)),
                "feather": ("INT", dict(pos)),
            }
        }

    def composite(self, samples_to: LatentDict, samples_from: LatentDict, x: int, y: int,
                  feather: int) -> tuple[LatentDict]:
        import torch
        to = _samples(samples_to, "LatentComposite", "samples_to")
        src = _samples(samples_from, "LatentComposite", "samples_from")
        x, y, feather = x // 8, y // 8, feather // 8
        out = dict(samples_to)
        s = to.clone()
        src = src[:, :, : to.shape[2] - y, : to.shape[3] - x]
        region = (slice(None), slice(None), slice(y, y + src.shape[2]), slice(x, x + src.shape[3]))
        if feather == 0:
            s[region] = src
        else:
            mask = torch.ones_like(src)
            for t in range(feather):
                f = (1.0 / feather) * (t + 1)
                if y != 0:
                    mask[:, :, t : t + 1, :] *= f
                if y + src.shape[2] < to.shape[2]:
                    mask[:, :, mask.shape[2] - 1 - t : mask.shape[2] - t, :] *= f
                if x != 0:
                    mask[:, :, :, t : t + 1] *= f
                if x + src.shape[3] < to.shape[3]:
                    mask[:, :, :, mask.shape[3] - 1 - t : mask.shape[3] - t] *= f
            s[region] = src * mask + s[region] * (1.0 - mask)
        out["samples"] = s
        return (out,)


class SetLatentNoiseMask(BuiltinNode):
    """Attach a noise mask (1 = regenerate) for inpainting with any model."""

    DISPLAY_NAME = "Set Latent Noise Mask"
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    def set_mask(self, samples: LatentDict, mask: torch.Tensor) -> tuple[LatentDict]:
        x = _samples(samples, "SetLatentNoiseMask", "samples")
        h, w = mask.shape[-2], mask.shape[-1]
        lh, lw = x.shape[-2], x.shape[-1]
        # a mask at pixel or latent resolution of *this* latent is fine; anything else is a mismatch
        if (h, w) not in ((lh * 8, lw * 8), (lh, lw)) and abs(h / w - lh / lw) > 0.02 * (lh / lw):
            raise input_error(
                "SetLatentNoiseMask", "mask",
                f"mask is {w}x{h} px but the latent is for a {lw * 8}x{lh * 8} px image; "
                "resize the mask (or the image) so their sizes match",
            )
        out = dict(samples)
        out["noise_mask"] = reshape_mask_nchw(mask)
        return (out,)


class LatentCompositeMasked(BuiltinNode):
    """Paste `source` into `destination` at (x, y) pixels (multiples of 8), through `mask` when given."""

    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {"destination": ("LATENT",), "source": ("LATENT",), "x": ("INT", dict(pos)),
                         "y": ("INT", dict(pos)), "resize_source": ("BOOLEAN", {"default": False})},
            "optional": {"mask": ("MASK",)},
        }

    def composite(self, destination: LatentDict, source: LatentDict, x: int, y: int, resize_source: bool,
                  mask: torch.Tensor | None = None) -> tuple[LatentDict]:
        dest = _samples(destination, "LatentCompositeMasked", "destination")
        src = _samples(source, "LatentCompositeMasked", "source")
        if src.shape[1] != dest.shape[1]:
            raise input_error("LatentCompositeMasked", "source",
                              f"source has {src.shape[1]} latent channels but destination has {dest.shape[1]}")
        out = dict(destination)
        out["samples"] = paste(dest, src, x // 8, y // 8, mask, resize_source)
        return (out,)


_FLIPS = ["x-axis: vertically", "y-axis: horizontally"]
_ROTATIONS = ["none", "90 degrees", "180 degrees", "270 degrees"]


class LatentFlip(BuiltinNode):
    """Mirror the latent vertically (x-axis) or horizontally (y-axis)."""

    DISPLAY_NAME = "Flip Latent"
    CATEGORY = "latent/transform"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "flip_method": (list(_FLIPS),)}}

    def flip(self, samples: LatentDict, flip_method: str) -> tuple[LatentDict]:
        s = _samples(samples, "LatentFlip", "samples")
        if flip_method not in _FLIPS:
            raise input_error("LatentFlip", "flip_method", f"{flip_method!r} is not one of {_FLIPS}")
        out = dict(samples)
        out["samples"] = s.flip(dims=[2] if flip_method.startswith("x") else [3])
        return (out,)


class LatentRotate(BuiltinNode):
    """Rotate the latent clockwise by 90, 180 or 270 degrees."""

    DISPLAY_NAME = "Rotate Latent"
    CATEGORY = "latent/transform"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "rotation": (list(_ROTATIONS),)}}

    def rotate(self, samples: LatentDict, rotation: str) -> tuple[LatentDict]:
        import torch

        s = _samples(samples, "LatentRotate", "samples")
        if rotation not in _ROTATIONS:
            raise input_error("LatentRotate", "rotation", f"{rotation!r} is not one of {_ROTATIONS}")
        out = dict(samples)
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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

    def crop(self, samples: LatentDict, width: int, height: int, x: int, y: int) -> tuple[LatentDict]:
        s = _samples(samples, "LatentCrop", "samples")
        lh, lw = s.shape[-2], s.shape[-1]
        x0 = max(0, min(x // 8, lw - 8))
        y0 = max(0, min(y // 8, lh - 8))
        x1, y1 = min(lw, x0 + width // 8), min(lh, y0 + height // 8)
        out = dict(samples)
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "samples1": ("LATENT",),
                "samples2": ("LATENT",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01}),
            }
        }

    def blend(self, samples1: LatentDict, samples2: LatentDict, blend_factor: float,
              blend_mode: str = "normal") -> tuple[LatentDict]:
        s1 = _samples(samples1, "LatentBlend", "samples1")
        s2 = _samples(samples2, "LatentBlend", "samples2").to(s1)
        if blend_mode != "normal":
            raise input_error("LatentBlend", "blend_mode", f"{blend_mode!r} is not supported; only 'normal' is")
        if s2.ndim != s1.ndim or s2.shape[1] != s1.shape[1]:
            raise input_error("LatentBlend", "samples2",
                              f"shape {tuple(s2.shape)} cannot be blended with samples1 {tuple(s1.shape)}")
        if s2.shape[2:] != s1.shape[2:]:
            s2 = common_upscale(s2, s1.shape[-1], s1.shape[-2], "bicubic", "center")
        out = dict(samples1)
        out["samples"] = s1 * blend_factor + repeat_to_batch(s2, s1.shape[0]) * (1 - blend_factor)
        return (out,)


class _LatentPair(BuiltinNode):
    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",)}}

    def _pair(self, samples1: LatentDict, samples2: LatentDict) -> tuple[torch.Tensor, torch.Tensor]:
        name = type(self).__name__
        s1 = _samples(samples1, name, "samples1")
        s2 = _samples(samples2, name, "samples2").to(s1)
        return s1, _match_latent(s1, s2, name, "samples2")


class LatentAdd(_LatentPair):
    """samples1 + samples2 (samples2 resized bilinear/centre and repeated to samples1's batch)."""

    def op(self, samples1: LatentDict, samples2: LatentDict) -> tuple[LatentDict]:
        s1, s2 = self._pair(samples1, samples2)
        return ({**samples1, "samples": s1 + s2},)


class LatentSubtract(_LatentPair):
    """samples1 - samples2 (samples2 resized bilinear/centre and repeated to samples1's batch)."""

    def op(self, samples1: LatentDict, samples2: LatentDict) -> tuple[LatentDict]:
        s1, s2 = self._pair(samples1, samples2)
        return ({**samples1, "samples": s1 - s2},)


class LatentInterpolate(_LatentPair):
    """Per pixel: directions mixed by `ratio` (1 = samples1) and re-normalised, lengths mixed linearly."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",),
                             "ratio": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def op(self, samples1: LatentDict, samples2: LatentDict, ratio: float) -> tuple[LatentDict]:
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

    def op(self, samples1: LatentDict, samples2: LatentDict) -> tuple[LatentDict]:
        import torch
        s1 = _samples(samples1, "LatentBatch", "samples1")
        s2 = _match_latent(s1, _samples(samples2, "LatentBatch", "samples2").to(s1), "LatentBatch", "samples2",
                           repeat_batch=False)
        out = dict(samples1)
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",),
                             "multiplier": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    def op(self, samples: LatentDict, multiplier: float) -> tuple[LatentDict]:
        return ({**samples, "samples": _samples(samples, "LatentMultiply", "samples") * multiplier},)


_SEED_BEHAVIORS = ["random", "fixed"]


class LatentBatchSeedBehavior(BuiltinNode):
    """"fixed": every item gets the first item's batch_index (same noise); "random": drop batch_index."""

    CATEGORY = "latent/advanced"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "seed_behavior": (list(_SEED_BEHAVIORS), {"default": "fixed"})}}

    def op(self, samples: LatentDict, seed_behavior: str) -> tuple[LatentDict]:
        s = _samples(samples, "LatentBatchSeedBehavior", "samples")
        if seed_behavior not in _SEED_BEHAVIORS:
            raise input_error("LatentBatchSeedBehavior", "seed_behavior",
                              f"{seed_behavior!r} is not one of {_SEED_BEHAVIORS}")
        out = dict(samples)
        if seed_behavior == "random":
            out.pop("batch_index", None)
        else:
            out["batch_index"] = [list(samples.get("batch_index", [0]))[0]] * s.shape[0]
        return (out,)


NODES = [EmptyLatentImage, LatentUpscale, LatentUpscaleBy, LatentFromBatch, RepeatLatentBatch, LatentComposite,
         SetLatentNoiseMask, LatentCompositeMasked, LatentFlip, LatentRotate, LatentCrop, LatentBlend, LatentAdd,
         LatentSubtract, LatentMultiply, LatentInterpolate, LatentBatch, LatentBatchSeedBehavior]
