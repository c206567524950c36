"""Video files through PyAV: encode an IMAGE batch (+ AUDIO) to mp4 / webm, decode a file back, probe it cheaply.

The behaviour follows ComfyUI's video objects (`comfy_api.latest.InputImpl`): frames are written as 8-bit RGB
converted to yuv420p at the rate rounded to 1/1000 fps; audio is AAC in mp4 and Opus (48 kHz) in webm, cut to the
video's length; metadata tags are container tags (mp4 with `movflags=use_metadata_tags`, so any key survives).
Decoding returns float32 RGB [T,H,W,3] through swscale's float planar output, like ComfyUI, so frames match its.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
from av.container import InputContainer

from engine.errors import VideoError
from engine.video.names import VideoSource, source_name

__all__ = ["VideoSource", "VideoInfo", "DecodedVideo", "open_video", "probe", "decode", "encode", "remux",
           "source_name", "encoder_rate", "count_frames", "VIDEO_ENCODERS", "AUDIO_ENCODERS", "MUXERS"]

# container -> muxer name; codec name -> FFmpeg encoder; container -> audio encoder
MUXERS = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}
VIDEO_ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
AUDIO_ENCODERS = {"mp4": "aac", "webm": "libopus", "mkv": "libopus"}
_AUDIO_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
_BYTE_FORMATS = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8"})


@contextmanager
def open_video(source: VideoSource) -> Iterator[InputContainer]:
    """Open a file or buffer for reading; a missing or unreadable file raises VideoError naming it."""
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise VideoError(f"video file {source_name(source)!r} does not exist")
    if isinstance(source, io.IOBase):
        source.seek(0)
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{source_name(source)!r} is not a readable video file ({exc})") from None
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: InputContainer, source: VideoSource) -> av.VideoStream:
    if not container.streams.video:
        raise VideoError(f"{source_name(source)!r} has no video stream")
    return container.streams.video[0]


def _audio_stream(container: InputContainer) -> av.AudioStream | None:
    # the last audio stream FFmpeg can decode (a stream without a codec context would crash the decoder)
    return next((s for s in reversed(container.streams.audio) if s.codec_context is not None), None)


@dataclass(frozen=True)
class VideoInfo:
    """What a file's headers say, read without decoding frames."""

    width: int
    height: int
    frame_rate: Fraction
    frame_count: int | None
    duration: float
    container: str
    video_codec: str
    audio_codec: str | None
    metadata: dict[str, str] = field(default_factory=dict)


def _frame_count(container: InputContainer, stream: av.VideoStream) -> int:
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    # webm / mkv headers carry no count: count the stream's packets (no decoding)
    container.seek(0)
    return sum(1 for packet in container.demux(stream) if packet.size)


def probe(source: VideoSource, count_frames: bool = True) -> VideoInfo:
    """Dimensions, frame rate, frame count, duration, codecs and container tags of a video file. A webm / mkv
    header has no frame count: `count_frames=False` skips counting its packets (frame_count is then None)."""
    with open_video(source) as container:
        stream = _video_stream(container, source)
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
        audio = _audio_stream(container)
        count = _frame_count(container, stream) if count_frames or container.duration is None else None
        if container.duration is not None:
            duration = float(container.duration / av.time_base)
        else:
            duration = float((count or 0) / rate)
        return VideoInfo(width=int(stream.width), height=int(stream.height), frame_rate=rate, frame_count=count,
                         duration=duration, container=str(container.format.name),
                         video_codec=str(stream.codec_context.name),
                         audio_codec=None if audio is None else str(audio.codec_context.name),
                         metadata=dict(container.metadata))


@dataclass
class DecodedVideo:
    """A decoded file: float frames [T,H,W,3], frame rate, AUDIO dict (or None), container tags."""

    images: torch.Tensor
    frame_rate: Fraction
    audio: dict[str, Any] | None
    metadata: dict[str, str]


class _FrameReader:
    """Converts decoded frames to float RGB arrays the way ComfyUI does (format chosen from the first frame)."""

    def __init__(self) -> None:
        self.as_bytes: bool | None = None
        self._pad: tuple[Any, ...] | None = None  # (graph, src, sink): the graph is kept, its filters die with it

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.as_bytes is None:
            self.as_bytes = frame.format.name in _BYTE_FORMATS
        img: np.ndarray
        if self.as_bytes:
            img = frame.to_ndarray(format="rgb24")
        elif frame.width % 32:
            # swscale's float output of a width that is not a multiple of 32 is not deterministic near the right
            # edge: convert a copy padded to 32 with the border smeared outwards, then crop
            img = self._padded(frame)
        else:
            img = frame.to_ndarray(format="gbrpf32le")
        if frame.rotation:
            img = np.ascontiguousarray(np.rot90(img, k=int(round(frame.rotation // 90)), axes=(0, 1)))
        return img

    def _padded(self, frame: av.VideoFrame) -> np.ndarray:
        if self._pad is None:
            self._pad = self._pad_graph(frame)
        if not self._pad:
            return frame.to_ndarray(format="gbrpf32le")
        _, src, sink = self._pad
        src.push(frame)
        out = sink.pull().to_ndarray(format="gbrpf32le")
        return np.ascontiguousarray(out[:frame.height, :frame.width])

    @staticmethod
    def _pad_graph(frame: av.VideoFrame) -> tuple[Any, Any, Any] | tuple[()]:
        """pad -> fillborders(smear) -> sink; () when FFmpeg refuses it (fillborders takes borders up to half the
        padded size, so frames under ~16 px), and those frames are converted directly."""
        width, height = -(-frame.width // 32) * 32, -(-frame.height // 32) * 32
        graph = av.filter.Graph()
        src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                               time_base=frame.time_base or Fraction(1, 1000))
        pad = graph.add("pad", f"{width}:{height}:0:0")
        fill = graph.add("fillborders", f"left=0:right={width - frame.width}:top=0:"
                                        f"bottom={height - frame.height}:mode=smear")
        sink = graph.add("buffersink")
        src.link_to(pad)
        pad.link_to(fill)
        fill.link_to(sink)
        try:
            graph.configure()
        except av.FFmpegError:
            return ()
        return (graph, src, sink)


def _in_window(t: float | None, start: float, duration: float) -> bool:
    # ComfyUI's window: from `start` (inclusive) for `duration` seconds (exclusive end; 0 = to the end)
    return t is None or (t >= start and (not duration or t < start + duration))


def decode(source: VideoSource, start: float = 0.0, duration: float = 0.0) -> DecodedVideo:
    """Every frame as float32 RGB [T,H,W,3] in 0..1, the average frame rate, the audio and the container tags;
    with `start` / `duration` (seconds, 0 = to the end) only the frames and audio of that window."""
    with open_video(source) as container:
        stream = _video_stream(container, source)
        audio_stream = _audio_stream(container)
        streams: list[Any] = [stream] if audio_stream is None else [stream, audio_stream]
        resampler = av.AudioResampler(format="fltp")
        reader = _FrameReader()
        frames: list[np.ndarray] = []
        samples: list[np.ndarray] = []
        audio_t0: float | None = None
        try:
            if start > 0:
                # lands on the keyframe before; frames ahead of the window are dropped below
                container.seek(int(start / (stream.time_base or Fraction(1, av.time_base))), stream=stream)
            for packet in container.demux(*streams):
                if packet.stream.type == "video":
                    frames.extend(reader(f) for f in packet.decode() if _in_window(f.time, start, duration))
                    continue
                for decoded in packet.decode():
                    audio_t0 = decoded.time if audio_t0 is None else audio_t0
                    samples.extend(chunk.to_ndarray() for chunk in resampler.resample(decoded))
        except av.FFmpegError as exc:
            raise VideoError(f"{source_name(source)!r}: decoding failed after {len(frames)} frames ({exc})") from None
        if not frames:
            window = f" between {start} s and {start + duration} s" if start or duration else ""
            raise VideoError(f"{source_name(source)!r} has no decodable video frames{window}")
        images = torch.from_numpy(np.stack(frames))
        images = images.float() / 255.0 if reader.as_bytes else images
        audio = None
        if samples and audio_stream is not None:
            rate = int(audio_stream.sample_rate or 1)
            first = max(0, round((start - (audio_t0 or 0.0)) * rate))
            last = first + round(duration * rate) if duration else None
            waveform = torch.from_numpy(np.concatenate(samples, axis=1)[:, first:last]).unsqueeze(0)
            audio = {"waveform": waveform, "sample_rate": rate}
        frame_rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(1)
        return DecodedVideo(images=images, frame_rate=frame_rate, audio=audio, metadata=dict(container.metadata))


def count_frames(source: VideoSource, start: float, duration: float) -> int:
    """Frames whose presentation time falls in the window, from the packets (nothing decoded)."""
    with open_video(source) as container:
        stream = _video_stream(container, source)
        base = stream.time_base or Fraction(1, av.time_base)
        return sum(1 for p in container.demux(stream)
                   if p.size and _in_window(None if p.pts is None else float(p.pts * base), start, duration))


def encoder_rate(frame_rate: float | Fraction) -> Fraction:
    """The stream rate ComfyUI writes: the frame rate rounded to 1/1000 fps."""
    return Fraction(round(Fraction(frame_rate) * 1000), 1000)


def _open_output(dest: VideoSource, container: str) -> Any:
    if container not in MUXERS:
        raise VideoError(f"cannot write {source_name(dest)!r}: container {container!r} is not one of {list(MUXERS)}")
    options = {}
    if container == "mp4":
        # keep any metadata key (prompt, workflow); faststart rewrites by file name, so only for paths
        options["movflags"] = "use_metadata_tags+faststart" if isinstance(dest, (str, os.PathLike)) else \
            "use_metadata_tags"
    try:
        return av.open(dest, mode="w", format=MUXERS[container], options=options)
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot create video file {source_name(dest)!r} ({exc})") from None


def _check_frames(images: Any, codec: str, dest: VideoSource) -> tuple[int, int]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] < 3:
        got = getattr(images, "shape", type(images).__name__)
        raise VideoError(f"cannot write {source_name(dest)!r}: expected an IMAGE batch [T,H,W,3], got {got}")
    height, width = int(images.shape[1]), int(images.shape[2])
    if codec == "h264" and (width % 2 or height % 2):
        raise VideoError(f"cannot write {source_name(dest)!r}: {codec.upper()} with yuv420p needs even dimensions, "
                         f"got {width}x{height}; crop or scale the frames to an even size")
    return width, height


def encode(dest: VideoSource, images: torch.Tensor, frame_rate: float | Fraction, *, container: str = "mp4",
           codec: str = "h264", audio: Mapping[str, Any] | None = None, metadata: Mapping[str, str] | None = None,
           crf: float | None = None, pix_fmt: str = "yuv420p", options: Mapping[str, str] | None = None) -> None:
    """Write `images` ([T,H,W,C] float 0..1) at `frame_rate`, with `audio` and container tags, to `dest`."""
    if codec not in VIDEO_ENCODERS:
        raise VideoError(f"cannot write {source_name(dest)!r}: codec {codec!r} is not one of {list(VIDEO_ENCODERS)}")
    width, height = _check_frames(images, codec, dest)
    rate = encoder_rate(frame_rate)
    if rate <= 0:
        raise VideoError(f"cannot write {source_name(dest)!r}: frame rate {float(frame_rate)} must be above 0")
    output = _open_output(dest, container)
    try:
        for key, value in (metadata or {}).items():
            output.metadata[key] = value
        stream = output.add_stream(VIDEO_ENCODERS[codec], rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = 1 / rate
        stream_options = dict(options or {})
        if crf is not None:
            stream_options["crf"] = str(crf)
        stream.options = stream_options
        audio_plan = _audio_plan(output, container, audio, rate, int(images.shape[0]))
        for index, image in enumerate(images):
            pixels = (image[..., :3] * 255).clamp(0, 255).to(device="cpu", dtype=torch.uint8).numpy()
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
            frame.pts = index
            frame.time_base = stream.codec_context.time_base
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
        if audio_plan is not None:
            _write_audio(output, *audio_plan)
    except av.FFmpegError as exc:
        output.close()
        _remove(dest)
        raise VideoError(f"encoding {source_name(dest)!r} with {codec} failed ({exc})") from None
    except BaseException:
        output.close()
        _remove(dest)
        raise
    output.close()


def _remove(dest: VideoSource) -> None:
    if isinstance(dest, (str, os.PathLike)) and os.path.exists(dest):
        os.remove(dest)


def _audio_plan(output: Any, container: str, audio: Mapping[str, Any] | None, rate: Fraction,
                frames: int) -> tuple[Any, np.ndarray, int, str] | None:
    """Add the audio stream; (stream, waveform [C,S] cut to the video's length, source rate, layout)."""
    if not audio:
        return None
    waveform, sample_rate = audio.get("waveform"), audio.get("sample_rate")
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or not isinstance(sample_rate, int) \
            or sample_rate <= 0:
        raise VideoError("audio must be an AUDIO dict {'waveform': [B,C,S] tensor, 'sample_rate': int > 0}, got "
                         f"waveform {getattr(waveform, 'shape', type(waveform).__name__)}, sample_rate {sample_rate!r}")
    keep = math.ceil(sample_rate / rate * frames)
    samples = waveform[0, :, :keep].float().cpu().contiguous().numpy()
    layout = _AUDIO_LAYOUTS.get(samples.shape[0], "stereo")
    if layout == "stereo" and samples.shape[0] != 2:
        samples = np.ascontiguousarray(samples[:2] if samples.shape[0] > 2 else np.repeat(samples, 2, axis=0))
    out_rate = 48000 if container == "webm" else sample_rate
    stream = output.add_stream(AUDIO_ENCODERS[container], rate=out_rate, layout=layout)
    return stream, samples, sample_rate, layout


def _write_audio(output: Any, stream: Any, samples: np.ndarray, sample_rate: int, layout: str) -> None:
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = 0
    frames = [frame]
    if stream.codec_context.sample_rate != sample_rate:
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=stream.codec_context.sample_rate)
        frames = list(resampler.resample(frame)) + list(resampler.resample(None))
    for item in frames:
        output.mux(stream.encode(item))
    output.mux(stream.encode(None))


def remux(source: VideoSource, dest: VideoSource, container: str, metadata: Mapping[str, str] | None) -> bool:
    """Copy the streams of `source` into `dest` unchanged with the source's tags overlaid by `metadata`;
    False (nothing written) when `container` cannot hold one of the streams."""
    with open_video(source) as inp:
        output = _open_output(dest, container)
        try:
            for key, value in inp.metadata.items():
                if key not in (metadata or {}):
                    output.metadata[key] = value
            for key, value in (metadata or {}).items():
                output.metadata[key] = value
            mapping = {}
            for stream in inp.streams:
                if stream.type not in ("video", "audio") or stream.codec_context is None:
                    continue
                try:
                    mapping[stream.index] = output.add_stream_from_template(stream)
                except ValueError:
                    output.close()
                    _remove(dest)
                    return False
            for packet in inp.demux():
                if packet.stream.index in mapping and packet.dts is not None:
                    packet.stream = mapping[packet.stream.index]
                    output.mux(packet)
        except av.FFmpegError as exc:
            output.close()
            _remove(dest)
            raise VideoError(f"copying {source_name(source)!r} to {source_name(dest)!r} failed ({exc})") from None
        output.close()
        return True
