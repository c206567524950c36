"""`comfy_api.latest._input_impl` (private in ComfyUI, imported by some packs): the VIDEO implementations."""
from __future__ import annotations

from engine.video import VideoFromComponents, VideoFromFile

__all__ = ["VideoFromFile", "VideoFromComponents"]
