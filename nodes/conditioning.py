"""Conditioning nodes: combine, average, concat, area / mask / strength / timestep range, zero out, inpaint model.

Prompt encoding and clip skip are in `nodes.text_encoders`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.image_ops import center_crop_to_multiple, grey_masked
from engine.types import Conditioning, CondOptions, CondPair, Latent
from nodes._base import BuiltinNode, InputTypes, input_error, resize_mask_to
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch

    from engine.handles import VaeHandle


__all__ = ["ConditioningCombine", "ConditioningAverage", "ConditioningConcat", "ConditioningSetArea",
           "ConditioningSetAreaPercentage", "ConditioningSetAreaStrength", "ConditioningSetMask",
           "ConditioningZeroOut", "ConditioningSetTimestepRange", "InpaintModelConditioning", "set_values"]

log = logging.getLogger(__name__)


def set_values(conditioning: Conditioning, values: CondOptions, append: bool = False) -> Conditioning:
    """A copy of `conditioning` with `values` set on every entry's options dict.

    With `append`, a list already under a key is extended instead (ComfyUI's `conditioning_set_values`).
    """
    out = []
    for cond, opts in conditioning:
        new_opts = dict(opts)
        for key, value in values.items():
            if append and isinstance(new_opts.get(key), list):
                new_opts[key] = new_opts[key] + list(value)
            else:
                new_opts[key] = value
        out.append([cond, new_opts])
    return out


class ConditioningCombine(BuiltinNode):
    """Concatenate two conditioning lists (each entry guides separately; predictions are averaged)."""

    DISPLAY_NAME = "Conditioning (Combine)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    def combine(self, conditioning_1: Conditioning, conditioning_2: Conditioning) -> tuple[Conditioning]:
        return (list(conditioning_1) + list(conditioning_2),)


def _first_from(conditioning_from: Conditioning, node: str) -> CondPair:
    if not conditioning_from:
        raise input_error(node, "conditioning_from", "the conditioning is empty; connect an encoded prompt")
    if len(conditioning_from) > 1:
        log.warning("%s: conditioning_from has %d entries; only the first is applied to conditioning_to",
                    node, len(conditioning_from))
    return list(conditioning_from[0])


class ConditioningAverage(BuiltinNode):
    """Blend every `conditioning_to` entry with the first `conditioning_from` entry (tokens and pooled output).

    `from` is cut or zero-padded to each `to` entry's token length; `conditioning_to_strength` 1 keeps `to`.
    No DISPLAY_NAME: ComfyUI's display-name table misspells this key, so its editors show the class name.
    """

    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "addWeighted"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",),
                             "conditioning_to_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0,
                                                                    "step": 0.01})}}

    def addWeighted(self, conditioning_to: Conditioning, conditioning_from: Conditioning,
                    conditioning_to_strength: float) -> tuple[Conditioning]:
        import torch

        w = conditioning_to_strength
        cond_from, opts_from = _first_from(conditioning_from, "ConditioningAverage")
        pooled_from = opts_from.get("pooled_output")
        out = []
        for cond_to, opts_to in conditioning_to:
            t0 = cond_from[:, : cond_to.shape[1]]
            if t0.shape[1] < cond_to.shape[1]:
                pad = t0.new_zeros((t0.shape[0], cond_to.shape[1] - t0.shape[1], cond_to.shape[2]))
                t0 = torch.cat([t0, pad], dim=1)
            new_opts = dict(opts_to)
            pooled_to = opts_to.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                new_opts["pooled_output"] = torch.mul(pooled_to, w) + torch.mul(pooled_from, 1.0 - w)
            elif pooled_from is not None:
                new_opts["pooled_output"] = pooled_from
            out.append([torch.mul(cond_to, w) + torch.mul(t0, 1.0 - w), new_opts])
        return (out,)


class ConditioningConcat(BuiltinNode):
    """Append the first `conditioning_from` entry's tokens to every `conditioning_to` entry (one longer prompt)."""

    DISPLAY_NAME = "Conditioning (Concat)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",)}}

    def concat(self, conditioning_to: Conditioning, conditioning_from: Conditioning) -> tuple[Conditioning]:
        import torch

        cond_from = _first_from(conditioning_from, "ConditioningConcat")[0]
        out = []
        for cond_to, opts_to in conditioning_to:
            if cond_to.shape[2] != cond_from.shape[2]:
                raise input_error("ConditioningConcat", "conditioning_from",
                                  f"token width {cond_from.shape[2]} does not match conditioning_to's "
                                  f"{cond_to.shape[2]}; both must come from the same text encoder")
            out.append([torch.cat((cond_to, cond_from), 1), dict(opts_to)])
        return (out,)


class ConditioningSetArea(BuiltinNode):
    """Restrict conditioning to a rectangle (pixels, stored in latent units)."""

    DISPLAY_NAME = "Conditioning (Set Area)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "width": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "height": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            }
        }

    def append(self, conditioning: Conditioning, width: int, height: int, x: int, y: int,
               strength: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"area": (height // 8, width // 8, y // 8, x // 8),
                                          "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaPercentage(BuiltinNode):
    """Restrict conditioning to a rectangle given as fractions of the image."""

    DISPLAY_NAME = "Conditioning (Set Area with Percentage)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        frac = {"min": 0, "max": 1.0, "step": 0.01}
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "width": ("FLOAT", {"default": 1.0, **frac}),
                "height": ("FLOAT", {"default": 1.0, **frac}),
                "x": ("FLOAT", {"default": 0, **frac}),
                "y": ("FLOAT", {"default": 0, **frac}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            }
        }

    def append(self, conditioning: Conditioning, width: float, height: float, x: float, y: float,
               strength: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"area": ("percentage", height, width, y, x),
                                          "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaStrength(BuiltinNode):
    """Set the weight of conditioning entries (how much each counts where areas overlap)."""

    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    def append(self, conditioning: Conditioning, strength: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"strength": strength}),)


class ConditioningSetMask(BuiltinNode):
    """Restrict conditioning to a mask."""

    DISPLAY_NAME = "Conditioning (Set Mask)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "mask": ("MASK",),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                "set_cond_area": (["default", "mask bounds"],),
            }
        }

    def append(self, conditioning: Conditioning, mask: torch.Tensor, set_cond_area: str,
               strength: float) -> tuple[Conditioning]:
        if mask.ndim < 3:
            mask = mask.unsqueeze(0)
        return (set_values(conditioning, {"mask": mask, "set_area_to_bounds": set_cond_area != "default",
                                          "mask_strength": strength}),)


class ConditioningZeroOut(BuiltinNode):
    """Zero the conditioning tensors (and pooled outputs)."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def zero_out(self, conditioning: Conditioning) -> tuple[Conditioning]:
        import torch
        out = []
        for cond, opts in conditioning:
            new_opts = dict(opts)
            for key in ("pooled_output", "conditioning_lyrics"):
                if new_opts.get(key) is not None:
                    new_opts[key] = torch.zeros_like(new_opts[key])
            out.append([torch.zeros_like(cond), new_opts])
        return (out,)


class ConditioningSetTimestepRange(BuiltinNode):
    """Apply conditioning only between `start` and `end` (fractions of the schedule)."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_range"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            }
        }

    def set_range(self, conditioning: Conditioning, start: float, end: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"start_percent": start, "end_percent": end}),)


class InpaintModelConditioning(BuiltinNode):
    """Add the masked image latent and mask to conditioning for inpainting (9-channel) models."""

    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "vae": ("VAE",),
                "pixels": ("IMAGE",),
                "mask": ("MASK",),
                "noise_mask": ("BOOLEAN", {"default": True, "tooltip": (
                    "Add a noise mask to the latent so sampling will only happen within the mask. Might "
                    "improve results or completely break things depending on the model.")}),
            }
        }

    # ComfyUI's parameter order (pixels before vae, unlike the inputs): packs call it positionally (inpaint-nodes)
    def encode(self, positive: Conditioning, negative: Conditioning, pixels: torch.Tensor, vae: VaeHandle,
               mask: torch.Tensor, noise_mask: bool = True) -> tuple[Conditioning, Conditioning, Latent]:
        m = resize_mask_to(mask, pixels, "InpaintModelConditioning")
        cropped, y0, x0 = center_crop_to_multiple(pixels)
        h, w = cropped.shape[1], cropped.shape[2]
        m = m[:, :, y0 : y0 + h, x0 : x0 + w]
        concat_latent = vae.encode(grey_masked(cropped, m)[..., :3])
        orig_latent = vae.encode(cropped[..., :3])
        latent: Latent = {"samples": orig_latent}
        if noise_mask:
            latent["noise_mask"] = m
        extra = {"concat_latent_image": concat_latent, "concat_mask": m}
        return set_values(positive, extra), set_values(negative, extra), latent


NODES = [ConditioningCombine, ConditioningAverage, ConditioningConcat, ConditioningSetArea,
         ConditioningSetAreaPercentage, ConditioningSetAreaStrength, ConditioningSetMask, ConditioningZeroOut,
         ConditioningSetTimestepRange, InpaintModelConditioning]
