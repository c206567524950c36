"""ComfyUI's `comfy.audio` for packs: `resample` and the three biquads of its 3-band equalizer, over
`engine.audio_dsp`.

ComfyUI moved these here from torchaudio; Loom answers the Hann-windowed sinc resampler at ComfyUI's defaults (6
zero crossings, rolloff 0.99) and refuses other settings by name. Its mel-spectrogram classes are not provided.
"""
from __future__ import annotations

import torch

from engine import audio_dsp

__all__ = ["resample", "bass_biquad", "treble_biquad", "equalizer_biquad"]


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99, resampling_method: str = "sinc_interp_hann", beta: float | None = None
             ) -> torch.Tensor:
    """`waveform` ([..., S]) from `orig_freq` to `new_freq` Hz (windowed-sinc, ComfyUI's defaults only)."""
    asked = {"lowpass_filter_width": (lowpass_filter_width, audio_dsp.ZERO_CROSSINGS),
             "rolloff": (rolloff, audio_dsp.ROLLOFF), "resampling_method": (resampling_method, "sinc_interp_hann"),
             "beta": (beta, None)}
    for name, (value, supported) in asked.items():
        if value != supported:
            raise ValueError(f"comfy.audio.resample: {name}={value!r} is not supported by Loom (only {supported!r})")
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq:
        raise ValueError(f"comfy.audio.resample: sample rates must be integers, got {orig_freq} -> {new_freq}")
    return audio_dsp.resample(waveform, int(orig_freq), int(new_freq))


def bass_biquad(waveform: torch.Tensor, sample_rate: int, gain: float, central_freq: float = 100,
                Q: float = 0.707) -> torch.Tensor:
    """Low shelf of `gain` dB below `central_freq` Hz, clamped to [-1, 1]."""
    return audio_dsp.low_shelf(waveform, sample_rate, float(gain), float(central_freq), float(Q))


def treble_biquad(waveform: torch.Tensor, sample_rate: int, gain: float, central_freq: float = 3000,
                  Q: float = 0.707) -> torch.Tensor:
    """High shelf of `gain` dB above `central_freq` Hz, clamped to [-1, 1]."""
    return audio_dsp.high_shelf(waveform, sample_rate, float(gain), float(central_freq), float(Q))


def equalizer_biquad(waveform: torch.Tensor, sample_rate: int, center_freq: float, gain: float,
                     Q: float = 0.707) -> torch.Tensor:
    """Peaking EQ of `gain` dB around `center_freq` Hz, clamped to [-1, 1]."""
    return audio_dsp.peaking_eq(waveform, sample_rate, float(gain), float(center_freq), float(Q))
