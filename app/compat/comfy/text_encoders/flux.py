"""ComfyUI's `comfy.text_encoders.flux` for packs: `FluxClipModel` as an `isinstance` stand-in, matching a CLIP
tower set with `clip_l` and `t5xxl` only (Flux.1 as Loom loads it). It cannot be instantiated."""
from __future__ import annotations

from app.compat._family_types import towers_type

__all__ = ["FluxClipModel"]

FluxClipModel = towers_type("FluxClipModel", __name__, frozenset({"clip_l", "t5xxl"}), exact=True)
