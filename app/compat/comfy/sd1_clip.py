"""ComfyUI's `comfy.sd1_clip` for packs: SD1's text-encoder classes as `isinstance` stand-ins (see `sdxl_clip`)."""
from __future__ import annotations

from app.compat._family_types import class_name_type, towers_type

__all__ = ["SD1ClipModel", "SDClipModel"]

SD1ClipModel = towers_type("SD1ClipModel", __name__, frozenset({"clip_l"}), exact=True)
SDClipModel = class_name_type("SDClipModel", __name__, frozenset({"ClipTextEncoder"}))
