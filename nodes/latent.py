"""Latent nodes: empty latent, upscale, batch slicing and repeat, composite, noise mask (ComfyUI names).

Transforms, blending and latent arithmetic are in `nodes.latent_ops`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.image_ops import common_upscale, paste, repeat_to_batch, reshape_mask_nchw
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, latent_samples
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["EmptyLatentImage", "LatentUpscale", "LatentUpscaleBy", "LatentFromBatch", "RepeatLatentBatch",
           "LatentComposite", "SetLatentNoiseMask", "LatentCompositeMasked"]

LATENT_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]


class EmptyLatentImage(BuiltinNode):
    """Zeros `[batch, 4, height//8, width//8]`."""

    DISPLAY_NAME = "Empty Latent Image"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[Latent]:
        import torch
        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class LatentUpscale(BuiltinNode):
    """Resize a latent to a pixel size (each side at least 64 px; a zero side keeps the aspect)."""

    DISPLAY_NAME = "Upscale Latent"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "crop": (CROP_METHODS,),
            }
        }

    def upscale(self, samples: Latent, upscale_method: str, width: int, height: int,
                crop: str) -> tuple[Latent]:
        x = latent_samples(samples, "LatentUpscale", "samples")
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
        out = samples.copy()
        out["samples"] = common_upscale(x, width // 8, height // 8, upscale_method, crop)
        return (out,)


class LatentUpscaleBy(BuiltinNode):
    """Resize a latent by a factor."""

    DISPLAY_NAME = "Upscale Latent By"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "samples": ("LATENT",),
                "upscale_method": (LATENT_UPSCALE_METHODS,),
                "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    def upscale(self, samples: Latent, upscale_method: str, scale_by: float) -> tuple[Latent]:
        x = latent_samples(samples, "LatentUpscaleBy", "samples")
        width = round(x.shape[-1] * scale_by)
        height = round(x.shape[-2] * scale_by)
        out = samples.copy()
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
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "samples": ("LATENT",),
                "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                "length": ("INT", {"default": 1, "min": 1, "max": 64}),
            }
        }

    def frombatch(self, samples: Latent, batch_index: int, length: int) -> tuple[Latent]:
        x = latent_samples(samples, "LatentFromBatch", "samples")
        out = samples.copy()
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
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def repeat(self, samples: Latent, amount: int) -> tuple[Latent]:
        x = latent_samples(samples, "RepeatLatentBatch", "samples")
        out = samples.copy()
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
    def INPUT_TYPES(cls) -> InputTypes:
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

    def composite(self, samples_to: Latent, samples_from: Latent, x: int, y: int,
                  feather: int) -> tuple[Latent]:
        import torch
        to = latent_samples(samples_to, "LatentComposite", "samples_to")
        src = latent_samples(samples_from, "LatentComposite", "samples_from")
        x, y, feather = x // 8, y // 8, feather // 8
        out = samples_to.copy()
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
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    def set_mask(self, samples: Latent, mask: torch.Tensor) -> tuple[Latent]:
        x = latent_samples(samples, "SetLatentNoiseMask", "samples")
        h, w = mask.shape[-2], mask.shape[-1]
        lh, lw = x.shape[-2], x.shape[-1]
        # a mask at pixel or latent resolution of *this* latent is fine; anything else is a mismatch
        if (h, w) not in ((lh * 8, lw * 8), (lh, lw)) and abs(h / w - lh / lw) > 0.02 * (lh / lw):
            raise input_error(
                "SetLatentNoiseMask", "mask",
                f"mask is {w}x{h} px but the latent is for a {lw * 8}x{lh * 8} px image; "
                "resize the mask (or the image) so their sizes match",
            )
        out = samples.copy()
        out["noise_mask"] = reshape_mask_nchw(mask)
        return (out,)


class LatentCompositeMasked(BuiltinNode):
    """Paste `source` into `destination` at (x, y) pixels (multiples of 8), through `mask` when given."""

    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        pos = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {"destination": ("LATENT",), "source": ("LATENT",), "x": ("INT", dict(pos)),
                         "y": ("INT", dict(pos)), "resize_source": ("BOOLEAN", {"default": False})},
            "optional": {"mask": ("MASK",)},
        }

    def composite(self, destination: Latent, source: Latent, x: int, y: int, resize_source: bool,
                  mask: torch.Tensor | None = None) -> tuple[Latent]:
        dest = latent_samples(destination, "LatentCompositeMasked", "destination")
        src = latent_samples(source, "LatentCompositeMasked", "source")
        if src.shape[1] != dest.shape[1]:
            raise input_error("LatentCompositeMasked", "source",
                              f"source has {src.shape[1]} latent channels but destination has {dest.shape[1]}")
        out = destination.copy()
        out["samples"] = paste(dest, src, x // 8, y // 8, mask, resize_source)
        return (out,)


NODES = [EmptyLatentImage, LatentUpscale, LatentUpscaleBy, LatentFromBatch, RepeatLatentBatch, LatentComposite,
         SetLatentNoiseMask, LatentCompositeMasked]
