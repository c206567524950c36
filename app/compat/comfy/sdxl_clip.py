"""ComfyUI's `comfy.sdxl_clip` for packs: SDXL's text-encoder classes as `isinstance` stand-ins.

Loom keeps a CLIP's towers in one `TextEncoderSet` named `clip_l` / `clip_g`; `SDXLClipModel` matches a set
with both, `SDXLRefinerClipModel` one with `clip_g` only, `SDXLClipG` the OpenCLIP-G tower itself.
"""
from __future__ import annotations

from app.compat._family_types import class_name_type, predicate_type, towers_type

__all__ = ["SDXLClipG", "SDXLClipModel", "SDXLRefinerClipModel", "StableCascadeClipModel"]

SDXLClipModel = towers_type("SDXLClipModel", __name__, frozenset({"clip_l", "clip_g"}), exact=True)
SDXLRefinerClipModel = towers_type("SDXLRefinerClipModel", __name__, frozenset({"clip_g"}), exact=True)
SDXLClipG = class_name_type("SDXLClipG", __name__, frozenset({"OpenClipTextEncoder"}))
# Loom loads no Stable Cascade model: nothing is one.
StableCascadeClipModel = predicate_type("StableCascadeClipModel", __name__, lambda obj: False,
                                        "nothing: Loom loads no Stable Cascade text encoder")
