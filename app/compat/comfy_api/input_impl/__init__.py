"""`comfy_api.input_impl` (ComfyUI keeps it for older packs): the VIDEO implementations."""
from __future__ import annotations

from engine.video import VideoFromComponents, VideoFromFile

__all__ = ["VideoFromFile", "VideoFromComponents"]
