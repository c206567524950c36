"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net"), as ComfyUI's FreeU / FreeU_V2 nodes apply it.

An ``output_block_patch``: where the decoder features ``h`` have ``model_channels * 4`` or ``* 2`` channels (by
channel count, whatever the block index), the first half of the backbone channels is amplified by ``b`` and the
skip features are low-pass damped by ``s`` in the Fourier domain. Version 2 scales the backbone by
``(b - 1) * m + 1`` with ``m`` the channel-mean map min-max normalised per sample, instead of a constant ``b``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["fourier_filter", "FreeUPatch"]


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """Multiply the centred ``2 * threshold`` square of lowest spatial frequencies of x [B, C, H, W] by ``scale``
    (FFT in float32; the result in x's dtype)."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    ch, cw = freq.shape[-2] // 2, freq.shape[-1] // 2
    mask = torch.ones(freq.shape, device=x.device)
    # Python slice semantics kept on purpose: a 1-pixel side gives the slice -1:1, i.e. the whole side
    mask[..., ch - threshold:ch + threshold, cw - threshold:cw + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    out: torch.Tensor = torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)
    return out


def _filtered_skip(hsp: torch.Tensor, scale: float) -> torch.Tensor:
    if hsp.device.type == "cpu":
        return fourier_filter(hsp, 1, scale)
    try:
        return fourier_filter(hsp, 1, scale)
    except RuntimeError:  # a backend without torch.fft: compute on the CPU (as ComfyUI does)
        return fourier_filter(hsp.cpu(), 1, scale).to(hsp.device)


@dataclass(frozen=True)
class FreeUPatch:
    """``output_block_patch(h, hsp, transformer_options) -> (h, hsp)``.

    Parameters: model_channels: the UNet's base width; b1, s1: backbone / skip factors at 4x that width;
    b2, s2: at 2x; version: 1 (constant backbone factor) or 2 (structure-weighted, FreeU_V2).
    """

    model_channels: int
    b1: float
    b2: float
    s1: float
    s2: float
    version: int = 1

    def _scales(self, channels: int) -> tuple[float, float] | None:
        table = {self.model_channels * 4: (self.b1, self.s1), self.model_channels * 2: (self.b2, self.s2)}
        return table.get(channels)

    def __call__(self, h: torch.Tensor, hsp: torch.Tensor,
                 transformer_options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        scales = self._scales(int(h.shape[1]))
        if scales is None:
            return h, hsp
        b, s = scales
        half = h.shape[1] // 2
        factor: torch.Tensor | float = b
        if self.version == 2:
            mean = h.mean(1, keepdim=True)
            flat = mean.view(mean.shape[0], -1)
            lo = flat.min(dim=-1, keepdim=True).values[:, :, None, None]
            hi = flat.max(dim=-1, keepdim=True).values[:, :, None, None]
            factor = (b - 1) * ((mean - lo) / (hi - lo)) + 1
        h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
        return h, _filtered_skip(hsp, s)
