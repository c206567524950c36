"""ComfyUI's `comfy.clip_vision` for packs: `load(path)` -> Loom's CLIP_VISION (`encode_image`, `.model(pixel_values,
intermediate_output=-2)`, `.load_device`, `.patcher`), `clip_preprocess`, `Output`."""
from __future__ import annotations

from typing import Any

from app.compat._environment import handles_for
from engine.adapters.clip_vision import ClipVisionModel, clip_preprocess
from engine.adapters.clip_vision import ClipVisionOutput as Output

__all__ = ["load", "clip_preprocess", "Output", "ClipVisionModel"]

_loom = handles_for(__name__)  # this Loom instance's objects


def load(ckpt_path: str) -> Any:
    """The CLIP vision model of a file (loaded once per unchanged file)."""
    from comfy.sd import _manager

    from engine.adapters.clip_vision import load_clip_vision

    return load_clip_vision(ckpt_path, _manager())
