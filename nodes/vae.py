"""VAE nodes: encode / decode (plain, tiled) and encode for inpainting."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from engine.image_ops import center_crop_to_multiple, grey_masked
from engine.types import Latent
from nodes._base import BuiltinNode, InputTypes, input_error, resize_mask_to

if TYPE_CHECKING:
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
        return (_decode_output(vae.decode_tiled(samples["samples"], tile_size // 8, overlap // 8)),)


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
        return ({"samples": vae.encode_tiled(cropped[..., :3], tile_size, overlap)},)


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
