"""`comfy_api.v0_0_3`: ComfyUI's newest versioned API, a facade over `comfy_api.latest`."""
from __future__ import annotations

from comfy_api.latest import IO, UI, ComfyAPI_latest, ComfyExtension, Input, io, sync_api, ui


class ComfyAPIAdapter_v0_0_3(ComfyAPI_latest):  # type: ignore[misc]  # ComfyUI module name: mypy cannot follow
    VERSION = "0.0.3"
    STABLE = False


ComfyAPI = ComfyAPIAdapter_v0_0_3
ComfyAPISync = sync_api(ComfyAPIAdapter_v0_0_3)

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "ComfyExtension", "io", "IO", "ui", "UI"]
