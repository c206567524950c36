"""ComfyUI's `comfy.model_patcher` for packs: `ModelPatcher` is Loom's MODEL handle class (for isinstance
checks and `.clone()`); patching APIs beyond the handle's own are not provided."""
from __future__ import annotations

from engine.handles import ModelHandle as ModelPatcher

__all__ = ["ModelPatcher"]
