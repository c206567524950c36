"""ComfyUI's `comfy.text_encoders.sd3_clip` for packs: SD3's text-encoder classes as `isinstance` stand-ins.

`SD3ClipModel` matches a CLIP tower set with `clip_l`, `clip_g` and `t5xxl` (SD3 / SD3.5 as Loom loads them),
`T5XXLModel` Loom's T5-XXL tower itself. They cannot be instantiated.
"""
from __future__ import annotations

from app.compat._family_types import class_name_type, towers_type

__all__ = ["SD3ClipModel", "T5XXLModel"]

SD3ClipModel = towers_type("SD3ClipModel", __name__, frozenset({"clip_l", "clip_g", "t5xxl"}), exact=True)
T5XXLModel = class_name_type("T5XXLModel", __name__, frozenset({"T5TextEncoder"}))
