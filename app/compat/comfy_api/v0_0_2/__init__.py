"""`comfy_api.v0_0_2`: the versioned API ComfyUI v0.3.x packs import, a facade over `comfy_api.latest`."""
from __future__ import annotations

from comfy_api.latest import ComfyAPI_latest, ComfyExtension, Input, io, sync_api, ui


class ComfyAPIAdapter_v0_0_2(ComfyAPI_latest):  # type: ignore[misc]  # ComfyUI module name: mypy cannot follow
    VERSION = "0.0.2"
    STABLE = False


ComfyAPI = ComfyAPIAdapter_v0_0_2
ComfyAPISync = sync_api(ComfyAPIAdapter_v0_0_2)

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "ComfyExtension", "io", "ui"]
