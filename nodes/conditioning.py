"""Conditioning nodes: text encoding, clip skip, combine, area / mask / timestep range, inpaint model."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, input_error
from nodes._ops import center_crop_to_multiple, reshape_mask_nchw
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch


__all__ = ["CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner", "CLIPSetLastLayer", "ConditioningCombine",
           "ConditioningAverage", "ConditioningConcat", "ConditioningSetArea", "ConditioningSetAreaPercentage",
           "ConditioningSetAreaStrength", "ConditioningSetMask", "ConditioningZeroOut",
           "ConditioningSetTimestepRange", "InpaintModelConditioning", "set_values"]

Conditioning = list[list[Any]]
log = logging.getLogger(__name__)


def set_values(conditioning: Conditioning, values: dict[str, Any], append: bool = False) -> Conditioning:
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


class CLIPTextEncode(BuiltinNode):
    """Encode a prompt (weights `(word:1.2)`, `embedding:name`) with a text encoder."""

    DISPLAY_NAME = "CLIP Text Encode (Prompt)"
    CATEGORY = "conditioning"
    DESCRIPTION = "Encodes a text prompt using a CLIP model into an embedding that guides the diffusion model."
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                    "tooltip": "The text to be encoded."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            }
        }

    def encode(self, clip: Any, text: str) -> tuple[Conditioning]:
        if clip is None:
            raise RuntimeError(
                "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your "
                "checkpoint does not contain a valid clip or text encoder model.")
        tokens = clip.tokenize(text)
        scheduled = getattr(clip, "encode_from_tokens_scheduled", None)
        if scheduled is not None:
            return (scheduled(tokens),)
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        return ([[cond, {"pooled_output": pooled}]],)


def _encode(clip: Any, tokens: Any, add_dict: dict[str, Any]) -> Conditioning:
    scheduled = getattr(clip, "encode_from_tokens_scheduled", None)
    if scheduled is not None:
        result: Conditioning = scheduled(tokens, add_dict=add_dict)
        return result
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    return [[cond, {"pooled_output": pooled, **add_dict}]]


class CLIPTextEncodeSDXL(BuiltinNode):
    """SDXL text encode: separate text for the bigG (`text_g`) and CLIP-L (`text_l`) towers, size conditioning."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        return {
            "required": {
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "crop_w": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
                "crop_h": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION}),
                "target_width": ("INT", dict(size)),
                "target_height": ("INT", dict(size)),
                "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
                "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            }
        }

    def encode(self, clip: Any, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
               target_height: int, text_g: str, text_l: str) -> tuple[Conditioning]:
        tokens = clip.tokenize(text_g)
        if "g" not in tokens or "l" not in tokens:
            raise input_error("CLIPTextEncodeSDXL", "clip",
                              "this CLIP has no SDXL towers (g and l); use CLIPTextEncode for this model")
        tokens["l"] = clip.tokenize(text_l)["l"]
        if len(tokens["l"]) != len(tokens["g"]):
            empty = clip.tokenize("")
            while len(tokens["l"]) < len(tokens["g"]):
                tokens["l"] += empty["l"]
            while len(tokens["l"]) > len(tokens["g"]):
                tokens["g"] += empty["g"]
        return (_encode(clip, tokens, {"width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h,
                                       "target_width": target_width, "target_height": target_height}),)


class CLIPTextEncodeSDXLRefiner(BuiltinNode):
    """SDXL refiner text encode with an aesthetic score and size."""

    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 0, "max": MAX_RESOLUTION}
        return {
            "required": {
                "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
            }
        }

    def encode(self, clip: Any, ascore: float, width: int, height: int, text: str) -> tuple[Conditioning]:
        return (_encode(clip, clip.tokenize(text), {"aesthetic_score": ascore, "width": width, "height": height}),)


class CLIPSetLastLayer(BuiltinNode):
    """Stop the text encoder at an earlier layer (-2 = "clip skip 2")."""

    DISPLAY_NAME = "CLIP Set Last Layer"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    def set_last_layer(self, clip: Any, stop_at_clip_layer: int) -> tuple[Any]:
        clip = clip.clone()
        if hasattr(clip, "clip_layer"):
            clip.clip_layer(stop_at_clip_layer)
        else:
            clip.set_clip_skip(stop_at_clip_layer)
        return (clip,)


class ConditioningCombine(BuiltinNode):
    """Concatenate two conditioning lists (each entry guides separately; predictions are averaged)."""

    DISPLAY_NAME = "Conditioning (Combine)"
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    def combine(self, conditioning_1: Conditioning, conditioning_2: Conditioning) -> tuple[Conditioning]:
        return (list(conditioning_1) + list(conditioning_2),)


def _first_from(conditioning_from: Conditioning, node: str) -> list[Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
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
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "conditioning": ("CONDITIONING",),
                "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            }
        }

    def set_range(self, conditioning: Conditioning, start: float, end: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"start_percent": start, "end_percent": end}),)


def grey_masked(pixels: torch.Tensor, mask_nchw: torch.Tensor) -> torch.Tensor:
    """Pixels where round(mask) == 1 set to 0.5 grey (RGB channels only)."""
    keep = (1.0 - mask_nchw.round()).squeeze(1).unsqueeze(-1)
    out = pixels.clone()
    out[..., :3] = (out[..., :3] - 0.5) * keep + 0.5
    return out


def resize_mask_to(mask: torch.Tensor, pixels: torch.Tensor, cls_name: str) -> torch.Tensor:
    """Mask as `[B,1,H,W]` bilinearly resized to the image; refuses a different aspect ratio."""
    import torch.nn.functional as F
    m = reshape_mask_nchw(mask).float()
    mh, mw = m.shape[-2], m.shape[-1]
    ph, pw = pixels.shape[1], pixels.shape[2]
    if (mh, mw) != (ph, pw) and abs(mw / mh - pw / ph) > 0.02 * (pw / ph):
        raise input_error(cls_name, "mask",
                          f"mask is {mw}x{mh} px but the image is {pw}x{ph} px; use a mask of the image's size")
    return F.interpolate(m, size=(ph, pw), mode="bilinear")


class InpaintModelConditioning(BuiltinNode):
    """Add the masked image latent and mask to conditioning for inpainting (9-channel) models."""

    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
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

    def encode(self, positive: Conditioning, negative: Conditioning, vae: Any, pixels: torch.Tensor,
               mask: torch.Tensor, noise_mask: bool = True) -> tuple[Conditioning, Conditioning, dict[str, Any]]:
        m = resize_mask_to(mask, pixels, "InpaintModelConditioning")
        cropped, y0, x0 = center_crop_to_multiple(pixels)
        h, w = cropped.shape[1], cropped.shape[2]
        m = m[:, :, y0 : y0 + h, x0 : x0 + w]
        concat_latent = vae.encode(grey_masked(cropped, m)[..., :3])
        orig_latent = vae.encode(cropped[..., :3])
        latent: dict[str, Any] = {"samples": orig_latent}
        if noise_mask:
            latent["noise_mask"] = m
        extra = {"concat_latent_image": concat_latent, "concat_mask": m}
        return set_values(positive, extra), set_values(negative, extra), latent


NODES = [CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner, CLIPSetLastLayer, ConditioningCombine,
         ConditioningAverage, ConditioningConcat, ConditioningSetArea, ConditioningSetAreaPercentage,
         ConditioningSetAreaStrength, ConditioningSetMask, ConditioningZeroOut, ConditioningSetTimestepRange,
         InpaintModelConditioning]
