"""`comfy_api.input_impl.video_types`: the VIDEO implementations and the names ComfyUI's module also holds."""
from __future__ import annotations

from engine.video import (
    VideoCodec,
    VideoComponents,
    VideoContainer,
    VideoFromComponents,
    VideoFromFile,
    VideoInput,
)

__all__ = ["VideoFromFile", "VideoFromComponents", "VideoInput", "VideoCodec", "VideoContainer", "VideoComponents"]
