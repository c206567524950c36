"""`comfy_api.util.video_types`: the video container / codec names and components."""
from __future__ import annotations

from engine.video import VideoCodec, VideoComponents, VideoContainer

__all__ = ["VideoContainer", "VideoCodec", "VideoComponents"]
