"""The VIDEO value that flows between nodes: ComfyUI's `VideoInput` with its two implementations.

`VideoFromFile` reads a file (or an in-memory buffer) lazily: sizes, rate, count and duration come from the headers,
frames only from `get_components()`. `VideoFromComponents` holds frames (+ audio) and encodes them on `save_to`.
Packs reach these classes as `comfy_api.latest.InputImpl.*` / `comfy_api.input_impl.*`, so the objects Loom's
nodes return are the ones packs test with `isinstance`.
"""
from __future__ import annotations

import io
import json
import math
import os
from abc import ABC, abstractmethod
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from engine.errors import VideoError
from engine.video.names import VideoCodec, VideoComponents, VideoContainer, VideoSource, _Choices, source_name

if TYPE_CHECKING:
    from engine.video.codec import VideoInfo

# `engine.video.codec` (PyAV, torch) is imported inside the methods that read or write files: node modules import
# these classes when nodes are registered, and validating a prompt must not load torch

__all__ = ["VideoCodec", "VideoContainer", "VideoComponents", "VideoInput", "VideoFromFile", "VideoFromComponents"]


def _choice(value: Any, kind: type[_Choices], what: str, path: Any) -> str:
    try:
        return str(kind(value).value)
    except ValueError:
        raise VideoError(f"cannot save {source_name(path)!r}: {what} {value!r} is not one of "
                         f"{kind.as_input()}") from None


def _target(path: Any, format: Any, codec_name: Any) -> tuple[str, str]:
    """(container, codec) for a save: "auto" follows the file extension (.webm -> VP9 in WebM), else MP4 + H.264."""
    container = _choice(format, VideoContainer, "format", path)
    chosen = _choice(codec_name, VideoCodec, "codec", path)
    if container == "auto":
        ext = os.path.splitext(os.fspath(path))[1].lower() if isinstance(path, (str, os.PathLike)) else ""
        container = {".webm": "webm", ".mkv": "mkv"}.get(ext, "mp4")
    if chosen == "auto":
        chosen = "vp9" if container == "webm" else "h264"
    return container, chosen


def _tags(metadata: dict[str, Any] | None) -> dict[str, str]:
    # ComfyUI json-encodes every value, strings included: the frontend parses each tag as JSON
    return {str(key): json.dumps(value) for key, value in (metadata or {}).items()}


class VideoInput(ABC):
    """A VIDEO value (ComfyUI's `comfy_api.input.VideoInput`)."""

    @abstractmethod
    def get_components(self) -> VideoComponents:
        """The frames, frame rate, audio and metadata."""

    @abstractmethod
    def save_to(self, path: Any, format: Any = VideoContainer.AUTO, codec: Any = VideoCodec.AUTO,
                metadata: dict[str, Any] | None = None) -> None:
        """Write the video to a file path or a writable buffer."""

    def get_stream_source(self) -> VideoSource:
        """A path or buffer PyAV can open (here: the video encoded into memory)."""
        buffer = io.BytesIO()
        self.save_to(buffer)
        buffer.seek(0)
        return buffer

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        images = self.get_components().images
        return int(images.shape[2]), int(images.shape[1])

    def get_frame_count(self) -> int:
        """Number of frames."""
        return int(self.get_components().images.shape[0])

    def get_frame_rate(self) -> Fraction:
        """Frames per second."""
        return Fraction(self.get_components().frame_rate)

    def get_duration(self) -> float:
        """Length in seconds."""
        return float(self.get_frame_count() / self.get_frame_rate())

    def get_container_format(self) -> str:
        """The container's format name (e.g. `mov,mp4,m4a,3gp,3g2,mj2`)."""
        from engine.video import codec as _codec
        return _codec.probe(self.get_stream_source()).container

    @abstractmethod
    def as_trimmed(self, start_time: float = 0.0, duration: float = 0.0,
                   strict_duration: bool = False) -> VideoInput | None:
        """The part from `start_time` (seconds; negative counts from the end) lasting `duration` (0 = to the end);
        None when `strict_duration` and less than `duration` is left."""


class VideoFromFile(VideoInput):
    """A video file (or BytesIO) read through PyAV."""

    def __init__(self, file: VideoSource, *, start_time: float = 0.0, duration: float = 0.0) -> None:
        self.__file = file
        self.__start_time = float(start_time)  # negative: counted from the end
        self.__duration = float(duration)  # 0: to the end

    def __repr__(self) -> str:
        window = f", start_time={self.__start_time}, duration={self.__duration}" if self._trimmed() else ""
        return f"VideoFromFile({source_name(self.__file)!r}{window})"

    def _trimmed(self) -> bool:
        return bool(self.__start_time or self.__duration)

    def get_active_trim_window(self) -> tuple[float, float]:
        """(start, duration) in seconds with a negative start resolved against the file's length."""
        start = self.__start_time
        if start < 0:
            start = max(self.info().duration + start, 0.0)
        return start, self.__duration

    def get_stream_source(self) -> VideoSource:
        """The path (or the buffer, rewound), so readers stream it without a copy."""
        if isinstance(self.__file, io.IOBase):
            self.__file.seek(0)
        return self.__file

    def info(self, count_frames: bool = False) -> VideoInfo:
        """The file's headers (Loom's addition: everything below in one read; frames counted on request)."""
        from engine.video import codec as _codec
        return _codec.probe(self.__file, count_frames=count_frames)

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height) from the headers."""
        info = self.info()
        return info.width, info.height

    def get_frame_count(self) -> int:
        """Frames in the video stream or its window (header count, else counted packets; nothing decoded)."""
        if self._trimmed():
            from engine.video import codec as _codec
            return _codec.count_frames(self.__file, *self.get_active_trim_window())
        count = self.info(count_frames=True).frame_count
        assert count is not None  # counted on request
        return count

    def get_frame_rate(self) -> Fraction:
        """The video stream's average frame rate."""
        return self.info().frame_rate

    def get_duration(self) -> float:
        """Length in seconds from the container (of the window, when trimmed)."""
        raw = self.info().duration
        left = min(raw, -self.__start_time) if self.__start_time < 0 else raw - self.__start_time
        return min(self.__duration, left) if self.__duration else left

    def get_container_format(self) -> str:
        """The container's format name."""
        return self.info().container

    def get_components(self) -> VideoComponents:
        """Decode every frame (float [T,H,W,3]), the audio and the container tags."""
        from engine.video import codec as _codec
        decoded = _codec.decode(self.__file, *self.get_active_trim_window())
        return VideoComponents(images=decoded.images, frame_rate=decoded.frame_rate, audio=decoded.audio,
                               metadata=decoded.metadata)

    def save_to(self, path: Any, format: Any = VideoContainer.AUTO, codec: Any = VideoCodec.AUTO,
                metadata: dict[str, Any] | None = None) -> None:
        """Copy the streams into `path` with `metadata` added when the container and codec allow, else
        re-encode."""
        container, chosen = _target(path, format, codec)
        info = self.info()
        same_codec = VideoCodec(codec) == VideoCodec.AUTO or info.video_codec == chosen
        from engine.video import codec as _codec
        if same_codec and not self._trimmed() and _remux_ok(info, container) and \
                _codec.remux(self.__file, path, container, _tags(metadata)):
            return
        if isinstance(path, io.BytesIO):
            path.seek(0)
            path.truncate()
        components = self.get_components()
        _encode(components, path, container, chosen, metadata, inherited=components.metadata)

    def as_trimmed(self, start_time: float = 0.0, duration: float = 0.0,
                   strict_duration: bool = False) -> VideoInput | None:
        """The same file with a window inside this one's (nothing decoded until frames are asked for)."""
        base, length = self.get_active_trim_window()
        current = self.get_duration()
        offset = max(current + start_time, 0.0) if start_time < 0 else start_time
        left = max(current - offset, 0.0)
        if strict_duration and duration and left < duration:
            return None
        window = min(duration, left) if duration else (left if length else 0.0)
        return VideoFromFile(self.__file, start_time=base + offset, duration=window)


def _remux_ok(info: VideoInfo, container: str) -> bool:
    if container == "webm":
        return info.video_codec in ("vp8", "vp9", "av1", "libdav1d") and info.audio_codec in (None, "opus", "vorbis")
    return True


class VideoFromComponents(VideoInput):
    """A video held as frames (+ audio); `save_to` encodes them."""

    def __init__(self, components: VideoComponents) -> None:
        self.__components = components

    def get_components(self) -> VideoComponents:
        """The frames, frame rate and audio."""
        c = self.__components
        return VideoComponents(images=c.images, frame_rate=c.frame_rate, audio=c.audio)

    def save_to(self, path: Any, format: Any = VideoContainer.AUTO, codec: Any = VideoCodec.AUTO,
                metadata: dict[str, Any] | None = None) -> None:
        """Encode the frames (and audio) to `path`: MP4 + H.264 by default, VP9 + Opus for a .webm path."""
        container, chosen = _target(path, format, codec)
        _encode(self.__components, path, container, chosen, metadata)

    def as_trimmed(self, start_time: float = 0.0, duration: float = 0.0,
                   strict_duration: bool = False) -> VideoInput | None:
        """The frames (and audio) of the window, cut from these components without re-encoding."""
        c = self.__components
        rate = Fraction(c.frame_rate)
        total = int(c.images.shape[0])
        # seconds as exact fractions (0.4 is not 2/5 in binary), so a frame on the window's edge stays in it
        begin_s, length_s = (Fraction(x).limit_denominator(1_000_000) for x in (start_time, duration))
        start = max(total / rate + begin_s, Fraction(0)) if begin_s < 0 else begin_s
        first = math.ceil(start * rate)
        last = min(total, math.ceil((start + length_s) * rate)) if length_s else total
        if strict_duration and (last - first) / rate < duration:
            return None
        audio = c.audio
        if audio is not None:
            sr = int(audio["sample_rate"])
            begin = round(start * sr)
            end = round((start + length_s) * sr) if length_s else None
            audio = {**audio, "waveform": audio["waveform"][..., begin:end]}
        return VideoFromComponents(VideoComponents(images=c.images[first:max(first, last)], frame_rate=c.frame_rate,
                                                   audio=audio))


def _encode(components: VideoComponents, path: Any, container: str, chosen: str, metadata: dict[str, Any] | None,
            inherited: dict[str, Any] | None = None) -> None:
    # a re-encoded file keeps the source's tags (already strings), overlaid by the caller's
    tags = {str(k): str(v) for k, v in (inherited or {}).items()} | _tags(metadata)
    from engine.video import codec as _codec
    _codec.encode(path, components.images, components.frame_rate, container=container, codec=chosen,
                  audio=components.audio, metadata=tags)
