"""Sample-level operations on waveforms ``[..., S]``: band-limited resampling and the RBJ shelf / peaking filters.

`resample` is windowed-sinc interpolation with a Hann window (the method torchaudio's
``functional.resample`` uses and ComfyUI's ``comfy.audio.resample`` keeps: 6 zero crossings, cutoff at 99% of the
lower Nyquist rate, output length ``ceil(S * new / orig)`` computed in float32). The shelves and the peaking EQ are
the biquads of Robert Bristow-Johnson's "Audio EQ Cookbook", run through `scipy.signal.lfilter` and clamped to
[-1, 1] as ComfyUI's equalizer does.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["resample", "resampled_length", "low_shelf", "high_shelf", "peaking_eq"]

ZERO_CROSSINGS = 6
ROLLOFF = 0.99


def resampled_length(length: int, orig_rate: int, new_rate: int) -> int:
    """How many samples `resample` returns for `length` input samples (ceil of the float32 product)."""
    import numpy as np

    g = math.gcd(orig_rate, new_rate)
    return math.ceil(float(np.float32(new_rate // g * length / (orig_rate // g))))


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """`waveform` ([..., S], float) resampled from `orig_rate` to `new_rate` Hz along the last axis."""
    import torch
    import torch.nn.functional as F

    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    if not waveform.is_floating_point():
        raise TypeError(f"resample: expected a float waveform, got {waveform.dtype}")
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g  # output phases per block, input samples per block
    cutoff = min(up, down) * ROLLOFF  # in cycles per block
    half = math.ceil(ZERO_CROSSINGS * down / cutoff)  # kernel half-width in input samples
    dtype, device = waveform.dtype, waveform.device
    # tap k of phase p sits (k - half) / down blocks from the block start, the phase's output p / up blocks in
    taps = torch.arange(-half, half + down, dtype=dtype, device=device)[None, None] / down
    offsets = taps - torch.arange(up, dtype=dtype, device=device)[:, None, None] / up
    x = (offsets * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(x * (math.pi / (2 * ZERO_CROSSINGS))) ** 2
    px = x * math.pi
    sinc = torch.where(px == 0, torch.ones_like(px), torch.sin(px) / torch.where(px == 0, torch.ones_like(px), px))
    kernel = sinc * window * (cutoff / down)  # [up, 1, taps]
    shape = waveform.shape
    flat = F.pad(waveform.reshape(-1, shape[-1]), (half, half + down))
    out = F.conv1d(flat[:, None], kernel, stride=down)  # [N, up, blocks]
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, :resampled_length(shape[-1], orig_rate, new_rate)]
    return out.reshape(*shape[:-1], out.shape[-1])


def _biquad(waveform: torch.Tensor, b: tuple[float, float, float], a: tuple[float, float, float]) -> torch.Tensor:
    import numpy as np
    import scipy.signal
    import torch

    data = waveform.detach().cpu().to(torch.float64).numpy()
    out = scipy.signal.lfilter(np.asarray(b) / a[0], np.asarray(a) / a[0], data, axis=-1)
    return torch.from_numpy(out).to(waveform).clamp(-1.0, 1.0)


def _shelf(waveform: torch.Tensor, rate: int, gain_db: float, freq: float, q: float, high: bool) -> torch.Tensor:
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / rate
    cos_w0 = math.cos(w0)
    root = 2.0 * math.sqrt(amp) * math.sin(w0) / (2.0 * q)
    up, dn = (amp + 1) * cos_w0, (amp - 1) * cos_w0
    if high:
        b = (amp * (amp + 1 + dn + root), -2.0 * amp * (amp - 1 + up), amp * (amp + 1 + dn - root))
        a = (amp + 1 - dn + root, 2.0 * (amp - 1 - up), amp + 1 - dn - root)
    else:
        b = (amp * (amp + 1 - dn + root), 2.0 * amp * (amp - 1 - up), amp * (amp + 1 - dn - root))
        a = (amp + 1 + dn + root, -2.0 * (amp - 1 + up), amp + 1 + dn - root)
    return _biquad(waveform, b, a)


def low_shelf(waveform: torch.Tensor, rate: int, gain_db: float, freq: float, q: float = 0.707) -> torch.Tensor:
    """Boost or cut by `gain_db` below `freq` Hz (cookbook low shelf)."""
    return _shelf(waveform, rate, gain_db, freq, q, high=False)


def high_shelf(waveform: torch.Tensor, rate: int, gain_db: float, freq: float, q: float = 0.707) -> torch.Tensor:
    """Boost or cut by `gain_db` above `freq` Hz (cookbook high shelf)."""
    return _shelf(waveform, rate, gain_db, freq, q, high=True)


def peaking_eq(waveform: torch.Tensor, rate: int, gain_db: float, freq: float, q: float) -> torch.Tensor:
    """Boost or cut by `gain_db` around `freq` Hz with bandwidth `q` (cookbook peaking EQ)."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / rate
    alpha = math.sin(w0) / (2.0 * q)
    cos_w0 = math.cos(w0)
    return _biquad(waveform, (1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp),
                   (1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp))
