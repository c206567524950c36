"""The helper functions packs import from ComfyUI's `comfy_extras.nodes_audio`, over `engine.audio`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine import audio, audio_dsp

if TYPE_CHECKING:
    import torch

__all__ = ["load", "f32_pcm", "match_audio_sample_rates"]


def load(filepath: str) -> tuple[torch.Tensor, int]:
    """ComfyUI's `load`: the first audio stream of a file as (waveform [C, S] float32, sample rate)."""
    decoded = audio.decode_file(filepath)
    return decoded["waveform"][0], decoded["sample_rate"]


def f32_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Integer PCM (int16 / int32) as float in [-1, 1); float input unchanged."""
    import torch

    if wav.dtype.is_floating_point:
        return wav
    scale = {torch.int16: 2.0 ** 15, torch.int32: 2.0 ** 31}.get(wav.dtype)
    if scale is None:
        raise ValueError(f"f32_pcm: unsupported sample type {wav.dtype}; expected int16, int32 or float")
    return wav.float() / scale


def match_audio_sample_rates(waveform_1: torch.Tensor, sample_rate_1: int, waveform_2: torch.Tensor,
                             sample_rate_2: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both waveforms at the higher of their rates, and that rate."""
    rate = max(sample_rate_1, sample_rate_2)
    return (audio_dsp.resample(waveform_1, sample_rate_1, rate), audio_dsp.resample(waveform_2, sample_rate_2, rate),
            rate)
