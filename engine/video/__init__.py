"""Video files (PyAV): `codec` encodes / decodes / probes, `objects` is the VIDEO value nodes pass (ComfyUI's)."""
from __future__ import annotations

from engine.video.codec import DecodedVideo, VideoInfo, decode, encode, probe, remux
from engine.video.objects import (
                                  VideoCodec,
                                  VideoComponents,
                                  VideoContainer,
                                  VideoFromComponents,
                                  VideoFromFile,
                                  VideoInput,
)

__all__ = ["DecodedVideo", "VideoInfo", "decode", "encode", "probe", "remux", "VideoCodec", "VideoComponents",
           "VideoContainer", "VideoFromComponents", "VideoFromFile", "VideoInput"]
