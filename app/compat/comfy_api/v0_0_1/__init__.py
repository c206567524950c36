"""`comfy_api.v0_0_1`: ComfyUI's first (stable, template-only) API version, a facade over `v0_0_2`."""
from __future__ import annotations

from comfy_api.latest import sync_api
from comfy_api.v0_0_2 import ComfyAPIAdapter_v0_0_2, Input


class ComfyAPIAdapter_v0_0_1(ComfyAPIAdapter_v0_0_2):  # type: ignore[misc]  # ComfyUI module name: mypy cannot follow
    VERSION = "0.0.1"
    STABLE = True


ComfyAPI = ComfyAPIAdapter_v0_0_1
ComfyAPISync = sync_api(ComfyAPIAdapter_v0_0_1)

__all__ = ["ComfyAPI", "ComfyAPISync", "Input"]
