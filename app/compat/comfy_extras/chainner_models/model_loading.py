"""ComfyUI's `comfy_extras.chainner_models.model_loading` (kept by ComfyUI for older packs, e.g. Comfyroll's
upscale nodes): `load_state_dict(state_dict)` -> the UPSCALE_MODEL of an upscaler's tensors (Loom's
`engine.upscale`: ESRGAN / Real-ESRGAN layouts, detected from the tensors)."""
from __future__ import annotations

from typing import Any

__all__ = ["load_state_dict"]


def load_state_dict(state_dict: dict[str, Any]) -> Any:
    """The upscale model of `state_dict` (as `UpscaleModelLoader` gives for a file)."""
    from comfy.sd import _manager

    from engine.upscale import upscale_model_from_state_dict

    return upscale_model_from_state_dict(state_dict, _manager(), "state dict")
