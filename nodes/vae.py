"""VAE nodes: encode / decode (plain, tiled) and encode for inpainting."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from engine.image_ops import center_crop_to_multiple, grey_masked
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, resize_mask_to

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from engine.handles import VaeHandle


__all__ = ["VAEEncode", "VAEDecode", "VAEDecodeTiled", "VAEEncodeTiled", "VAEEncodeForInpaint"]


def _check_vae(vae: object, cls_name: str) -> None:
    if vae is None:
        raise input_error(cls_name, "vae", "the VAE is None; the checkpoint has no VAE, load one with VAELoader")


def _check_image(pixels: object, cls_name: str, input_name: str = "pixels") -> None:
    import torch
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4:
        got = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise input_error(cls_name, input_name, f"expected an IMAGE tensor [B,H,W,C], got {got}")
    if pixels.shape[1] < 8 or pixels.shape[2] < 8:
        raise input_error(cls_name, input_name,
                          f"image is {pixels.shape[2]}x{pixels.shape[1]} px; it must be at least 8x8")


def _decode_output(images: torch.Tensor) -> torch.Tensor:
    if images.ndim == 5:  # video VAEs: [B,T,H,W,C] -> [B*T,H,W,C]
        images = images.reshape(-1, images.shape[-3], images.shape[-2], images.shape[-1])
    return images


class VAEEncode(BuiltinNode):
    """Encode images to a latent (posterior mode, unscaled); crops to multiples of 8."""

    DISPLAY_NAME = "VAE Encode"
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: VaeHandle, pixels: torch.Tensor) -> tuple[Latent]:
        _check_vae(vae, "VAEEncode")
        _check_image(pixels, "VAEEncode")
        cropped, _, _ = center_crop_to_multiple(pixels)
        return ({"samples": vae.encode(cropped[..., :3])},)


class VAEDecode(BuiltinNode):
    """Decode a latent to images in 0..1."""

    DISPLAY_NAME = "VAE Decode"
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    def decode(self, vae: VaeHandle, samples: Latent) -> tuple[torch.Tensor]:
        _check_vae(vae, "VAEDecode")
        return (_decode_output(vae.decode(samples["samples"])),)


class VAEDecodeTiled(BuiltinNode):
    """Decode in overlapping tiles to bound memory."""

    DISPLAY_NAME = "VAE Decode (Tiled)"
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "samples": ("LATENT",),
                "vae": ("VAE",),
                "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32}),
                "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
                "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4}),
                "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4}),
            }
        }

    def decode(self, vae: VaeHandle, samples: Latent, tile_size: int, overlap: int = 64,
               temporal_size: int = 64, temporal_overlap: int = 8) -> tuple[torch.Tensor]:
        _check_vae(vae, "VAEDecodeTiled")
        if tile_size < overlap * 4:
            overlap = tile_size // 4
        latent = samples["samples"]
        tiled = getattr(vae, "decode_tiled", None)
        if tiled is not None:
            return (_decode_output(tiled(latent, tile_size // 8, overlap // 8)),)
        return (_tiled(vae.decode, latent, tile_size // 8, overlap // 8, 8),)


class VAEEncodeTiled(BuiltinNode):
    """Encode in overlapping tiles to bound memory."""

    DISPLAY_NAME = "VAE Encode (Tiled)"
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "pixels": ("IMAGE",),
                "vae": ("VAE",),
                "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64}),
                "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
                "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4}),
                "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4}),
            }
        }

    def encode(self, vae: VaeHandle, pixels: torch.Tensor, tile_size: int, overlap: int = 64,
               temporal_size: int = 64, temporal_overlap: int = 8) -> tuple[Latent]:
        _check_vae(vae, "VAEEncodeTiled")
        _check_image(pixels, "VAEEncodeTiled")
        cropped, _, _ = center_crop_to_multiple(pixels)
        tiled = getattr(vae, "encode_tiled", None)
        if tiled is not None:
            return ({"samples": tiled(cropped[..., :3], tile_size, overlap)},)
        nchw = cropped[..., :3]
        out = _tiled(lambda t: vae.encode(t.movedim(1, -1)).movedim(1, -1), nchw.movedim(-1, 1), tile_size,
                     overlap, 1 / 8)
        return ({"samples": out.movedim(-1, 1)},)


def _tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """Run `fn` on overlapping tiles of `x` `[B,C,H,W]` and blend with linear ramps; returns `[B,H',W',C']`."""
    import torch
    h, w = x.shape[-2], x.shape[-1]
    tile = max(tile, 1)
    stride = max(tile - overlap, 1)
    out: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    for y0 in range(0, max(h - overlap, 1), stride):
        for x0 in range(0, max(w - overlap, 1), stride):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ys, xs = max(0, y1 - tile), max(0, x1 - tile)
            part = fn(x[:, :, ys:y1, xs:x1])
            oy, ox = int(ys * scale), int(xs * scale)
            ph, pw = part.shape[1], part.shape[2]
            if out is None:
                out = torch.zeros(part.shape[0], int(h * scale), int(w * scale), part.shape[3])
                weight = torch.zeros(1, int(h * scale), int(w * scale), 1)
            ramp_h = _ramp(ph, int(overlap * scale))
            ramp_w = _ramp(pw, int(overlap * scale))
            mask = (ramp_h[:, None] * ramp_w[None, :]).reshape(1, ph, pw, 1)
            out[:, oy : oy + ph, ox : ox + pw] += part * mask
            assert weight is not None
            weight[:, oy : oy + ph, ox : ox + pw] += mask
    assert out is not None and weight is not None
    return out / weight.clamp_min(1e-8)


def _ramp(n: int, overlap: int) -> torch.Tensor:
    import torch
    r = torch.ones(n)
    k = min(overlap, n // 2)
    if k > 0:
        edge = torch.arange(1, k + 1, dtype=torch.float32) / (k + 1)
        r[:k] = edge
        r[n - k :] = edge.flip(0)
    return r


class VAEEncodeForInpaint(BuiltinNode):
    """Encode with the masked area set to grey and attach the grown mask as noise mask."""

    DISPLAY_NAME = "VAE Encode (for Inpainting)"
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    def encode(self, vae: VaeHandle, pixels: torch.Tensor, mask: torch.Tensor,
               grow_mask_by: int = 6) -> tuple[Latent]:
        import torch
        import torch.nn.functional as F
        _check_vae(vae, "VAEEncodeForInpaint")
        _check_image(pixels, "VAEEncodeForInpaint")
        m = resize_mask_to(mask, pixels, "VAEEncodeForInpaint")
        cropped, y0, x0 = center_crop_to_multiple(pixels)
        h, w = cropped.shape[1], cropped.shape[2]
        m = m[:, :, y0 : y0 + h, x0 : x0 + w]
        if grow_mask_by == 0:
            grown = m
        else:
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
            padding = math.ceil((grow_mask_by - 1) / 2)
            grown = torch.clamp(F.conv2d(m.round(), kernel, padding=padding), 0, 1)
        latent = vae.encode(grey_masked(cropped, m)[..., :3])
        return ({"samples": latent, "noise_mask": grown[:, :, :h, :w].round()},)


NODES = [VAEEncode, VAEEncodeForInpaint, VAEDecode, VAEDecodeTiled, VAEEncodeTiled]
