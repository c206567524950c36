"""Video files (PyAV): `codec` encodes / decodes / probes, `objects` is the VIDEO value nodes pass (ComfyUI's).

Importing this package loads neither PyAV nor torch (`engine.video.codec` does, on first use)."""
from __future__ import annotations

from engine.video.names import VideoCodec, VideoComponents, VideoContainer, VideoSource
from engine.video.objects import VideoFromComponents, VideoFromFile, VideoInput

__all__ = ["VideoCodec", "VideoComponents", "VideoContainer", "VideoSource", "VideoFromComponents", "VideoFromFile",
           "VideoInput"]
