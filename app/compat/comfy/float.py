"""ComfyUI's `comfy.float` for packs: `stochastic_rounding(value, dtype, seed=0)`.

Packs (GGUF's LoRA patching, for one) write a patched fp32 weight back in its storage dtype with it. For 16- and
32-bit float dtypes it is a plain cast; for fp8 each value becomes one of its two neighbouring fp8 values, the
upper one with probability equal to its fractional distance (unbiased on average), drawn from a generator seeded
with `seed`.
"""
from __future__ import annotations

import torch

__all__ = ["stochastic_rounding"]

# fp8 format -> (mantissa bits, smallest normal exponent)
_FP8 = {torch.float8_e4m3fn: (3, -6), torch.float8_e5m2: (2, -14)}


def stochastic_rounding(value: torch.Tensor, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """`value` in `dtype`; fp8 targets are rounded stochastically (module docstring)."""
    if dtype not in _FP8:
        return value.to(dtype=dtype)
    mantissa, min_exponent = _FP8[dtype]
    info = torch.finfo(dtype)
    x = value.float().clamp(info.min, info.max)
    magnitude = x.abs()
    exponent = torch.floor(torch.log2(magnitude.clamp_min(info.smallest_normal))).clamp_min(min_exponent)
    ulp = torch.pow(2.0, exponent - mantissa)  # spacing of the fp8 values around each element
    scaled = magnitude / ulp
    low = torch.floor(scaled)
    generator = torch.Generator(device=value.device).manual_seed(seed)
    up = torch.rand(x.shape, generator=generator, device=value.device) < (scaled - low)
    rounded = (low + up.float()) * ulp
    return (torch.sign(x) * rounded).clamp(info.min, info.max).to(dtype)
