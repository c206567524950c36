"""ComfyUI's AUDIO value and audio files, read and written through PyAV.

AUDIO is the dict ``{"waveform": float32 Tensor[B, C, S], "sample_rate": int}``. `decode_file` reads the first
audio stream of anything FFmpeg opens (WAV, FLAC, MP3, Ogg Opus / Vorbis, M4A / AAC, the sound track of a video)
into one such dict with a batch of one; integer samples map to [-1, 1) as ``x / 2**(bits-1)``. `encode_file`
writes one clip ``[C, S]`` as FLAC (16 bit), MP3 (LAME), Opus (Ogg) or WAV (16 bit PCM), with tags the way
ComfyUI's SaveAudio writes them: one tag per key, its value JSON text (`metadata_tags`: ``prompt`` and each
``extra_pnginfo`` key, such as ``workflow``). Opus takes only 8, 12, 16, 24 and 48 kHz, so other rates are
resampled up to the next of those (`opus_rate`).
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from engine.audio_dsp import resample
from engine.png import metadata_text

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["Audio", "AudioFileError", "ENCODERS", "MP3_QUALITIES", "OPUS_QUALITIES", "OPUS_RATES", "decode_file",
           "encode_file", "metadata_tags", "opus_rate", "read_tags", "as_audio"]


class Audio(TypedDict):
    """ComfyUI's AUDIO: a batch of clips sharing one sample rate."""

    waveform: torch.Tensor
    sample_rate: int


class AudioFileError(ValueError):
    """An audio file that cannot be read, or a clip that cannot be written in the asked format."""


# format -> FFmpeg encoder; the container is the format of the same name
ENCODERS: Mapping[str, str] = {"flac": "flac", "mp3": "libmp3lame", "opus": "libopus", "wav": "pcm_s16le"}
MP3_QUALITIES: tuple[str, ...] = ("V0", "128k", "320k")  # V0: LAME's best variable bit rate
OPUS_QUALITIES: tuple[str, ...] = ("64k", "96k", "128k", "192k", "320k")
OPUS_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
_BIT_RATES = {"64k": 64000, "96k": 96000, "128k": 128000, "192k": 192000, "320k": 320000}
_INT_SCALE = {"int16": 2.0 ** 15, "int32": 2.0 ** 31}


def as_audio(value: Any, what: str) -> Audio:
    """`value` checked to be an AUDIO dict (waveform [B, C, S] tensor, positive whole rate, returned as int);
    ValueError naming `what`."""
    import torch

    if not isinstance(value, Mapping) or "waveform" not in value or "sample_rate" not in value:
        raise ValueError(f"{what}: expected an AUDIO dict with 'waveform' and 'sample_rate', got "
                         f"{type(value).__name__}")
    waveform, rate = value["waveform"], value["sample_rate"]
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3:
        raise ValueError(f"{what}: expected a waveform tensor [batch, channels, samples], got "
                         f"{tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__}")
    # packs hand over numpy integers or whole floats (44100.0) too; ComfyUI passes them on, so they are kept
    real = isinstance(rate, numbers.Real) and not isinstance(rate, bool) and math.isfinite(float(rate))
    whole = int(float(rate)) if real else 0
    if whole <= 0 or whole != rate:
        raise ValueError(f"{what}: expected a positive integer sample_rate, got {rate!r}")
    return {"waveform": waveform, "sample_rate": whole}


def _samples(frame: Any) -> np.ndarray:
    """One decoded frame as float32 [channels, samples]."""
    import numpy as np

    data: np.ndarray = frame.to_ndarray()
    if not frame.format.is_planar:  # interleaved: one row of samples * channels
        data = data.reshape(-1, frame.layout.nb_channels).T
    if data.dtype == np.uint8:
        out: np.ndarray = (data.astype(np.float32) - 128.0) / 128.0
        return out
    scale = _INT_SCALE.get(str(data.dtype))
    out = (data.astype(np.float64) / scale) if scale is not None else data
    return out.astype(np.float32)


def decode_file(path: str | os.PathLike[str]) -> Audio:
    """The first audio stream of the file at `path` as AUDIO (batch of one, the stream's own rate and channels)."""
    import av
    import numpy as np
    import torch

    name = os.fspath(path)
    try:
        with av.open(name) as container:
            if not container.streams.audio:
                kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "no streams"
                raise AudioFileError(f"{name} has no audio stream (it holds: {kinds})")
            stream = container.streams.audio[0]
            rates: set[int] = set()
            parts = []
            for frame in container.decode(stream):
                rates.add(int(frame.sample_rate))  # the rate frames decode at; may differ from the header (SBR)
                parts.append(_samples(frame))
    except AudioFileError:
        raise
    except FileNotFoundError:
        raise AudioFileError(f"{name} does not exist") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioFileError(f"{name} is not a readable audio file ({exc})") from None
    if not parts:
        raise AudioFileError(f"{name}: its audio stream decoded to no samples")
    if len(rates) > 1 or len({part.shape[0] for part in parts}) > 1:
        raise AudioFileError(f"{name}: the sample rate or channel count changes inside its audio stream "
                             f"(rates {sorted(rates)}); convert it to one format first")
    waveform = torch.from_numpy(np.concatenate(parts, axis=1))
    return {"waveform": waveform.unsqueeze(0), "sample_rate": rates.pop()}


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The text tags of a file: the container's, then its first audio stream's (Ogg keeps them on the stream)."""
    import av

    with av.open(os.fspath(path)) as container:
        tags = dict(container.metadata)
        if container.streams.audio:
            tags.update(container.streams.audio[0].metadata)
    return tags


def metadata_tags(prompt: Any = None, extra_pnginfo: Mapping[str, Any] | None = None) -> dict[str, str]:
    """ComfyUI's audio tags: `engine.png.metadata_text` (``prompt`` and each `extra_pnginfo` key, JSON text)."""
    return metadata_text(prompt, extra_pnginfo)


def opus_rate(sample_rate: int) -> int:
    """The rate an Opus file of a `sample_rate` clip is written at: itself if Opus takes it, else the next one up."""
    return next((rate for rate in OPUS_RATES if rate >= sample_rate), OPUS_RATES[-1])


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def encode_file(waveform: torch.Tensor, sample_rate: int, path: str | os.PathLike[str], format: str,
                quality: str | None = None, tags: Mapping[str, str] | None = None) -> None:
    """Write one clip (`waveform` [C, S]) to `path` as `format` ("flac", "mp3", "opus", "wav") with `tags`.

    `quality` is one of `MP3_QUALITIES` for MP3 (default "V0"), of `OPUS_QUALITIES` for Opus (default "128k");
    FLAC and WAV ignore it. The file is built in memory and written once, so a failed encode leaves no file.
    """
    import io

    import av

    encoder = ENCODERS.get(format)
    if encoder is None:
        raise AudioFileError(f"cannot write audio as {format!r}; formats: {', '.join(ENCODERS)}")
    if waveform.ndim != 2 or waveform.shape[0] == 0:
        raise AudioFileError(f"expected one clip [channels, samples], got shape {tuple(waveform.shape)}")
    channels = int(waveform.shape[0])
    if format in ("mp3", "opus") and channels > 2:
        raise AudioFileError(f"{format} files hold at most 2 channels, the clip has {channels}; "
                             "mix it down or save it as flac")
    clip = waveform.detach().cpu().float()
    rate = int(sample_rate)
    if format == "opus" and rate not in OPUS_RATES:
        rate = opus_rate(rate)
        clip = resample(clip, int(sample_rate), rate)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format=format) as container:
            for key, value in (tags or {}).items():
                container.metadata[key] = value
            stream: Any = container.add_stream(encoder, rate=rate, layout=_layout(channels))
            _set_quality(stream, format, quality)
            frame = av.AudioFrame.from_ndarray(clip.T.reshape(1, -1).contiguous().numpy(), format="flt",
                                               layout=_layout(channels))
            frame.sample_rate = rate
            frame.pts = 0
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise AudioFileError(f"could not encode {channels} channel(s) at {rate} Hz as {format} ({exc})") from None
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())


def _set_quality(stream: Any, format: str, quality: str | None) -> None:
    if format == "mp3":
        quality = quality or "V0"
        if quality not in MP3_QUALITIES:
            raise AudioFileError(f"mp3 quality {quality!r} is not one of {list(MP3_QUALITIES)}")
        if quality == "V0":
            stream.codec_context.qscale = True  # variable bit rate at global quality 0: LAME's -V0
        else:
            stream.bit_rate = _BIT_RATES[quality]
    elif format == "opus":
        quality = quality or "128k"
        if quality not in OPUS_QUALITIES:
            raise AudioFileError(f"opus quality {quality!r} is not one of {list(OPUS_QUALITIES)}")
        stream.bit_rate = _BIT_RATES[quality]
