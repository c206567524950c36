"""ComfyUI's video types for packs (`comfy_api.latest.Types`, `InputImpl`, `Input.Video`): the objects Loom's own
video nodes pass (`engine.video`), so a pack's `isinstance(video, InputImpl.VideoFromFile)` holds for them."""
from __future__ import annotations

from engine.video import (
    VideoCodec,
    VideoComponents,
    VideoContainer,
    VideoFromComponents,
    VideoFromFile,
    VideoInput,
)

__all__ = ["InputImpl", "Types", "VideoCodec", "VideoComponents", "VideoContainer", "VideoFromComponents",
           "VideoFromFile", "VideoInput"]


class InputImpl:
    """ComfyUI's video implementations."""

    VideoFromFile = VideoFromFile
    VideoFromComponents = VideoFromComponents


class Types:
    """ComfyUI's video type names."""

    VideoCodec = VideoCodec
    VideoContainer = VideoContainer
    VideoComponents = VideoComponents
