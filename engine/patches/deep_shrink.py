"""Kohya's "Deep Shrink" (ComfyUI's PatchModelAddDownscale): while sigma is inside a window, the UNet's features
after one input block are resized down by a factor, and the decoder resizes them back up to each skip's size.

Two patches on the UNet's block hooks: ``DownscaleInput`` (``input_block_patch`` or, to keep the full-size
skip, ``input_block_patch_after_skip``) and ``UpscaleToSkip`` (``output_block_patch``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from engine.image_ops import common_upscale

__all__ = ["DownscaleInput", "UpscaleToSkip", "RESIZE_METHODS"]

RESIZE_METHODS = ("bicubic", "nearest-exact", "bilinear", "area", "bislerp")


@dataclass(frozen=True)
class DownscaleInput:
    """``p(h, transformer_options) -> h``: resize by ``1 / factor`` after input block ``block_number`` while
    ``sigma_end <= sigma <= sigma_start`` (sigma: the call's first row)."""

    block_number: int
    factor: float
    sigma_start: float
    sigma_end: float
    method: str

    def __call__(self, h: torch.Tensor, transformer_options: dict[str, Any]) -> torch.Tensor:
        if transformer_options["block"][1] != self.block_number:
            return h
        sigma = float(transformer_options["sigmas"][0])
        if not self.sigma_end <= sigma <= self.sigma_start:
            return h
        inverse = 1.0 / self.factor  # ComfyUI rounds size * (1 / factor), not size / factor
        return common_upscale(h, round(h.shape[-1] * inverse), round(h.shape[-2] * inverse), self.method, "disabled")


@dataclass(frozen=True)
class UpscaleToSkip:
    """``p(h, hsp, transformer_options) -> (h, hsp)``: resize ``h`` to the skip's size where their heights differ."""

    method: str

    def __call__(self, h: torch.Tensor, hsp: torch.Tensor,
                 transformer_options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if h.shape[2] != hsp.shape[2]:
            h = common_upscale(h, hsp.shape[-1], hsp.shape[-2], self.method, "disabled")
        return h, hsp
