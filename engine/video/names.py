"""The light half of `engine.video` (no PyAV, no torch): the container / codec names SaveVideo offers, the
components record and how a video source is named in messages. Node modules import these at registration."""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any, BinaryIO

__all__ = ["VideoSource", "source_name", "VideoCodec", "VideoContainer", "VideoComponents"]

VideoSource = str | os.PathLike[str] | BinaryIO


def source_name(source: VideoSource) -> str:
    """The file name to show in messages (`<in-memory video>` for a buffer)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or "<in-memory video>"


class _Choices(str, Enum):
    @classmethod
    def as_input(cls) -> list[str]:
        """The names, for a combo input."""
        return [member.value for member in cls]


class VideoCodec(_Choices):
    """Codec names SaveVideo offers ("auto" is H.264)."""

    AUTO = "auto"
    H264 = "h264"


class VideoContainer(_Choices):
    """Container names SaveVideo offers ("auto" is MP4)."""

    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def get_extension(cls, value: str | VideoContainer) -> str:
        """The file extension of a container ("auto" is MP4)."""
        return "mp4" if cls(value) in (cls.AUTO, cls.MP4) else ""


@dataclass
class VideoComponents:
    """A video's frames (IMAGE, [T,H,W,C]), frame rate, optional AUDIO dict and container metadata."""

    images: Any
    frame_rate: Fraction
    audio: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
