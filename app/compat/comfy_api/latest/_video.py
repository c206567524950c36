"""ComfyUI's video types for packs (`comfy_api.latest.Types`, `InputImpl`): the container / codec names, the
components record, and a video made of components. Loom has no video encoder or decoder (ComfyUI's use PyAV),
so saving or opening a video file raises and says so."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from typing import Any

_NO_CODEC = ("Loom has no video encoder / decoder (ComfyUI's video objects use PyAV); save frames with SaveImage "
             "or SaveAnimatedWEBP instead")


class _Choices(str, Enum):
    @classmethod
    def as_input(cls) -> list[str]:
        """The names, for a combo input."""
        return [member.value for member in cls]


class VideoCodec(_Choices):
    """Codec names a video node offers."""

    AUTO = "auto"
    H264 = "h264"


class VideoContainer(_Choices):
    """Container names a video node offers."""

    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def get_extension(cls, value: str | VideoContainer) -> str:
        """The file extension of a container ("auto" is MP4)."""
        return "mp4" if cls(value) in (cls.AUTO, cls.MP4) else ""


@dataclass
class VideoComponents:
    """A video's frames (IMAGE, [T,H,W,C]), frame rate, optional AUDIO dict and metadata."""

    images: Any
    frame_rate: Fraction
    audio: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class VideoFromComponents:
    """A video held as its components: sizes and frames are answered, encoding it to a file is not supported."""

    def __init__(self, components: VideoComponents) -> None:
        self._components = components

    def get_components(self) -> VideoComponents:
        """The frames, frame rate and audio."""
        return self._components

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        images = self._components.images
        return int(images.shape[2]), int(images.shape[1])

    def get_frame_count(self) -> int:
        """Number of frames."""
        return int(self._components.images.shape[0])

    def get_frame_rate(self) -> Fraction:
        """Frames per second."""
        return Fraction(self._components.frame_rate)

    def get_duration(self) -> float:
        """Length in seconds."""
        return float(self.get_frame_count() / self.get_frame_rate())

    def save_to(self, path: str, format: Any = VideoContainer.AUTO, codec: Any = VideoCodec.AUTO,
                metadata: dict[str, Any] | None = None) -> None:
        """Not supported: raises, naming the file."""
        raise NotImplementedError(f"cannot write video {path!r}: {_NO_CODEC}")


class VideoFromFile:
    """A video file: Loom cannot decode it, so every read raises."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def _refuse(self) -> NotImplementedError:
        return NotImplementedError(f"cannot read video {self._file!r}: {_NO_CODEC}")

    def get_components(self) -> VideoComponents:
        """Not supported: raises."""
        raise self._refuse()

    def get_dimensions(self) -> tuple[int, int]:
        """Not supported: raises."""
        raise self._refuse()

    def save_to(self, path: str, format: Any = VideoContainer.AUTO, codec: Any = VideoCodec.AUTO,
                metadata: dict[str, Any] | None = None) -> None:
        """Not supported: raises."""
        raise self._refuse()


class InputImpl:
    """ComfyUI's video implementations."""

    VideoFromFile = VideoFromFile
    VideoFromComponents = VideoFromComponents


class Types:
    """ComfyUI's video type names."""

    VideoCodec = VideoCodec
    VideoContainer = VideoContainer
    VideoComponents = VideoComponents
