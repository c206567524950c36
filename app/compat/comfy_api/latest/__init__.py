"""`comfy_api.latest`: `io` (node schema), `ui` (output helpers), `ComfyExtension`, the runtime `ComfyAPI`.

V3 nodes are converted to V1 classes when registered (`io.ComfyNode._loom_as_v1`), so Loom's executor
runs them like any other node. The versioned modules (`comfy_api.v0_0_3`, `v0_0_2`, `v0_0_1`) are facades
over the same objects (`_api.py`).
"""
from __future__ import annotations

from comfy_api.latest import io, ui
from comfy_api.latest._api import ComfyAPI_latest, ComfyExtension, Input, sync_api
from comfy_api.latest._video import InputImpl, Types

ComfyAPI = ComfyAPI_latest
ComfyAPISync = sync_api(ComfyAPI_latest)
IO = io  # the current ComfyUI also exports the modules under upper-case names
UI = ui

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "InputImpl", "Types", "ComfyExtension", "io", "IO", "ui", "UI"]
