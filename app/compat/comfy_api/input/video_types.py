"""`comfy_api.input.video_types`: the VIDEO base class."""
from __future__ import annotations

from engine.video import VideoInput

__all__ = ["VideoInput"]
