"""Audio editing nodes (ComfyUI's comfy_extras/nodes_audio.py, no model): EmptyAudio, TrimAudioDuration,
SplitAudioChannels, JoinAudioChannels, AudioConcat, AudioMerge, AudioAdjustVolume, AudioEqualizer3Band and
AudioDuration. Two clips of different rates are brought to the higher rate first (`engine.audio_dsp.resample`).
A None AUDIO (a video without a sound track) passes through, as in ComfyUI."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engine import audio_dsp
from engine.audio import Audio, as_audio
from nodes._base import BuiltinNode, InputTypes, input_error

if TYPE_CHECKING:
    import torch

__all__ = ["EmptyAudio", "TrimAudioDuration", "SplitAudioChannels", "JoinAudioChannels", "AudioConcat",
           "AudioMerge", "AudioAdjustVolume", "AudioEqualizer3Band", "AudioDuration"]

log = logging.getLogger(__name__)
_HUGE = 0xFFFFFFFFFFFFFFFF  # ComfyUI's "no limit" bound on the time inputs


def _audio(class_name: str, input_name: str, value: Any) -> Audio:
    try:
        return as_audio(value, "AUDIO")
    except ValueError as exc:
        raise input_error(class_name, input_name, str(exc)) from exc


def match_rates(first: Audio, second: Audio) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both waveforms at the higher of the two sample rates, and that rate."""
    rate1, rate2 = first["sample_rate"], second["sample_rate"]
    rate = max(rate1, rate2)
    if rate1 != rate2:
        log.info("resampling a %d Hz clip to %d Hz to match the other", min(rate1, rate2), rate)
    return (audio_dsp.resample(first["waveform"], rate1, rate), audio_dsp.resample(second["waveform"], rate2, rate),
            rate)


class _AudioNode(BuiltinNode):
    CATEGORY = "audio"
    RETURN_TYPES: tuple[str, ...] = ("AUDIO",)
    FUNCTION = "execute"


class EmptyAudio(_AudioNode):
    """A silent clip of `duration` seconds."""

    DISPLAY_NAME = "Empty Audio"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "duration": ("FLOAT", {"default": 60.0, "min": 0.0, "max": _HUGE, "step": 0.01,
                                   "tooltip": "Duration of the empty audio clip in seconds"}),
            "sample_rate": ("INT", {"default": 44100, "min": 1, "max": 192000, "advanced": True,
                                    "tooltip": "Sample rate of the empty audio clip."}),
            "channels": ("INT", {"default": 2, "min": 1, "max": 2, "advanced": True,
                                 "tooltip": "Number of audio channels (1 for mono, 2 for stereo)."}),
        }}

    def execute(self, duration: float, sample_rate: int, channels: int) -> tuple[Audio]:
        import torch

        samples = int(round(duration * sample_rate))
        return ({"waveform": torch.zeros((1, channels, samples), dtype=torch.float32), "sample_rate": sample_rate},)


class TrimAudioDuration(_AudioNode):
    """Keep `duration` seconds from `start_index` (negative: counted from the end)."""

    DISPLAY_NAME = "Trim Audio Duration"
    DESCRIPTION = "Trim audio tensor into chosen time range."

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "audio": ("AUDIO", {}),
            "start_index": ("FLOAT", {"default": 0.0, "min": -_HUGE, "max": _HUGE, "step": 0.01, "tooltip": (
                "Start time in seconds, can be negative to count from the end (supports sub-seconds).")}),
            "duration": ("FLOAT", {"default": 60.0, "min": 0.0, "step": 0.01, "tooltip": "Duration in seconds"}),
        }}

    def execute(self, audio: Audio | None, start_index: float, duration: float) -> tuple[Audio | None]:
        if audio is None:
            return (None,)
        value = _audio("TrimAudioDuration", "audio", audio)
        waveform, rate = value["waveform"], value["sample_rate"]
        length = int(waveform.shape[-1])
        if length == 0:
            return (value,)
        start = int(round(start_index * rate)) + (length if start_index < 0 else 0)
        start = max(0, min(start, length))
        end = max(0, min(start + int(round(duration * rate)), length))
        if start >= end:
            raise input_error("TrimAudioDuration", "start_index", (
                f"start {start_index}s and duration {duration}s select nothing of a {length / rate:.3f}s clip; "
                "the start must lie inside the clip and the duration be above 0"))
        return ({"waveform": waveform[..., start:end], "sample_rate": rate},)


class SplitAudioChannels(_AudioNode):
    """A stereo clip as two mono clips."""

    DISPLAY_NAME = "Split Audio Channels"
    DESCRIPTION = "Separates the audio into left and right channels."
    RETURN_TYPES = ("AUDIO", "AUDIO")
    RETURN_NAMES = ("left", "right")

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {})}}

    def execute(self, audio: Audio | None) -> tuple[Audio | None, Audio | None]:
        if audio is None:
            return (None, None)
        value = _audio("SplitAudioChannels", "audio", audio)
        waveform, rate = value["waveform"], value["sample_rate"]
        if waveform.shape[1] != 2:
            raise input_error("SplitAudioChannels", "audio",
                              f"expected stereo audio (2 channels), got {waveform.shape[1]} channel(s)")
        return ({"waveform": waveform[:, 0:1], "sample_rate": rate}, {"waveform": waveform[:, 1:2], "sample_rate": rate})


class JoinAudioChannels(_AudioNode):
    """Two mono clips as one stereo clip (the longer trimmed to the shorter)."""

    DISPLAY_NAME = "Join Audio Channels"
    DESCRIPTION = "Joins left and right mono audio channels into a stereo audio."
    RETURN_NAMES = ("audio",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio_left": ("AUDIO", {}), "audio_right": ("AUDIO", {})}}

    def execute(self, audio_left: Audio | None, audio_right: Audio | None) -> tuple[Audio | None]:
        import torch

        if audio_left is None or audio_right is None:
            return (audio_right if audio_left is None else audio_left,)
        left = _audio("JoinAudioChannels", "audio_left", audio_left)
        right = _audio("JoinAudioChannels", "audio_right", audio_right)
        for name, value in (("audio_left", left), ("audio_right", right)):
            if value["waveform"].shape[1] != 1:
                raise input_error("JoinAudioChannels", name,
                                  f"expected mono audio (1 channel), got {value['waveform'].shape[1]} channels")
        wave_left, wave_right, rate = match_rates(left, right)
        n = min(wave_left.shape[-1], wave_right.shape[-1])
        return ({"waveform": torch.cat([wave_left[..., :n], wave_right[..., :n]], dim=1), "sample_rate": rate},)


def _stereo(value: Audio) -> Audio:
    waveform = value["waveform"]
    return {"waveform": waveform.repeat(1, 2, 1) if waveform.shape[1] == 1 else waveform,
            "sample_rate": value["sample_rate"]}


class AudioConcat(_AudioNode):
    """audio2 appended after (or put before) audio1; mono clips become stereo first."""

    DISPLAY_NAME = "Concatenate Audio"
    DESCRIPTION = "Concatenates the audio1 to audio2 in the specified direction."

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "audio1": ("AUDIO", {}), "audio2": ("AUDIO", {}),
            "direction": (["after", "before"], {"default": "after",
                                                "tooltip": "Whether to append audio2 after or before audio1."}),
        }}

    def execute(self, audio1: Audio | None, audio2: Audio | None, direction: str) -> tuple[Audio | None]:
        import torch

        if audio1 is None or audio2 is None:
            return (audio2 if audio1 is None else audio1,)
        first = _audio("AudioConcat", "audio1", audio1)
        second = _audio("AudioConcat", "audio2", audio2)
        wave1, wave2, rate = match_rates(_stereo(first), _stereo(second))
        if wave1.shape[:2] != wave2.shape[:2]:
            raise input_error("AudioConcat", "audio2", f"batch and channels {tuple(wave2.shape[:2])} differ from "
                                                       f"audio1's {tuple(wave1.shape[:2])}")
        pair = (wave1, wave2) if direction == "after" else (wave2, wave1)
        return ({"waveform": torch.cat(pair, dim=2), "sample_rate": rate},)


class AudioMerge(_AudioNode):
    """audio2 overlaid on audio1 (trimmed or padded to audio1's length), scaled back into [-1, 1] if it clips."""

    DISPLAY_NAME = "Merge Audio"
    DESCRIPTION = "Combine two audio tracks by overlaying their waveforms."

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "audio1": ("AUDIO", {}), "audio2": ("AUDIO", {}),
            "merge_method": (["add", "mean", "subtract", "multiply"],
                             {"tooltip": "The method used to combine the audio waveforms."}),
        }}

    def execute(self, audio1: Audio | None, audio2: Audio | None, merge_method: str) -> tuple[Audio | None]:
        import torch

        if audio1 is None or audio2 is None:
            return (audio2 if audio1 is None else audio1,)
        wave1, wave2, rate = match_rates(_audio("AudioMerge", "audio1", audio1), _audio("AudioMerge", "audio2", audio2))
        n1, n2 = wave1.shape[-1], wave2.shape[-1]
        if n1 == 0 or n2 == 0:
            return ({"waveform": wave1, "sample_rate": rate},)
        wave2 = wave2[..., :n1] if n2 > n1 else torch.nn.functional.pad(wave2, (0, n1 - n2))
        ops = {"add": lambda: wave1 + wave2, "subtract": lambda: wave1 - wave2, "multiply": lambda: wave1 * wave2,
               "mean": lambda: (wave1 + wave2) / 2}
        if merge_method not in ops:
            raise input_error("AudioMerge", "merge_method", f"{merge_method!r} is not one of {list(ops)}")
        try:
            merged = ops[merge_method]()
        except RuntimeError as exc:
            raise input_error("AudioMerge", "audio2", f"cannot be combined with audio1 ({exc})") from exc
        peak = merged.abs().max()
        return ({"waveform": merged / peak if peak > 1.0 else merged, "sample_rate": rate},)


class AudioAdjustVolume(_AudioNode):
    """The clip times 10^(volume/20): +6 dB about doubles the amplitude, -6 dB halves it."""

    DISPLAY_NAME = "Adjust Audio Volume"
    DESCRIPTION = "Adjust the volume of the audio by a specified amount in decibels (dB)."

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "audio": ("AUDIO", {}),
            "volume": ("INT", {"default": 1, "min": -100, "max": 100, "tooltip": (
                "Volume adjustment in decibels (dB). 0 = no change, +6 = double, -6 = half, etc")}),
        }}

    def execute(self, audio: Audio | None, volume: int) -> tuple[Audio | None]:
        if audio is None or volume == 0:
            return (audio,)
        value = _audio("AudioAdjustVolume", "audio", audio)
        return ({"waveform": value["waveform"] * (10 ** (volume / 20)), "sample_rate": value["sample_rate"]},)


def _band(default: float, lo: float, hi: float, tooltip: str, step: float | None = None
          ) -> tuple[str, dict[str, Any]]:
    kind = "INT" if step is None else "FLOAT"
    spec: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        spec["step"] = step
    return kind, {**spec, "tooltip": tooltip}


class AudioEqualizer3Band(_AudioNode):
    """Bass shelf, mid peak and treble shelf, each skipped at 0 dB; the result is clamped to [-1, 1]."""

    DISPLAY_NAME = "Audio Equalizer (3-Band)"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "audio": ("AUDIO", {}),
            "low_gain_dB": _band(0.0, -24.0, 24.0, "Gain for Low frequencies (Bass)", 0.1),
            "low_freq": _band(100, 20, 500, "Cutoff frequency for Low shelf"),
            "mid_gain_dB": _band(0.0, -24.0, 24.0, "Gain for Mid frequencies", 0.1),
            "mid_freq": _band(1000, 200, 4000, "Center frequency for Mids"),
            "mid_q": _band(0.707, 0.1, 10.0, "Q factor (bandwidth) for Mids", 0.1),
            "high_gain_dB": _band(0.0, -24.0, 24.0, "Gain for High frequencies (Treble)", 0.1),
            "high_freq": _band(5000, 1000, 15000, "Cutoff frequency for High shelf"),
        }}

    def execute(self, audio: Audio | None, low_gain_dB: float, low_freq: int, mid_gain_dB: float, mid_freq: int,
                mid_q: float, high_gain_dB: float, high_freq: int) -> tuple[Audio | None]:
        if audio is None:
            return (None,)
        value = _audio("AudioEqualizer3Band", "audio", audio)
        waveform, rate = value["waveform"], value["sample_rate"]
        if waveform.shape[-1] == 0:
            return (value,)
        if low_gain_dB != 0:
            waveform = audio_dsp.low_shelf(waveform, rate, low_gain_dB, float(low_freq))
        if mid_gain_dB != 0:
            waveform = audio_dsp.peaking_eq(waveform, rate, mid_gain_dB, float(mid_freq), mid_q)
        if high_gain_dB != 0:
            waveform = audio_dsp.high_shelf(waveform, rate, high_gain_dB, float(high_freq))
        return ({"waveform": waveform, "sample_rate": rate},)


class AudioDuration(_AudioNode):
    """The clip's length in seconds and its sample rate."""

    DISPLAY_NAME = "Audio Duration"
    DESCRIPTION = "Returns the length of the audio in seconds and its sample rate."
    RETURN_TYPES = ("FLOAT", "INT")
    RETURN_NAMES = ("duration", "sample_rate")
    OUTPUT_TOOLTIPS = ("Length of the audio in seconds.", "Sample rate of the audio in Hz.")

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"audio": ("AUDIO", {})}}

    def execute(self, audio: Audio | None) -> tuple[float, int]:
        if audio is None:
            return (0.0, 0)
        value = _audio("AudioDuration", "audio", audio)
        return (value["waveform"].shape[-1] / float(value["sample_rate"]), value["sample_rate"])


NODES = [TrimAudioDuration, SplitAudioChannels, JoinAudioChannels, AudioConcat, AudioMerge, AudioAdjustVolume,
         EmptyAudio, AudioEqualizer3Band, AudioDuration]
