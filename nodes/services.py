"""The services built-in nodes use, bound to the node classes at registration (no globals)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.lazy_models import LazyModelManager
from engine.paths import ModelPaths

if TYPE_CHECKING:
    from engine.model_management import ModelManager

__all__ = ["NodeServices", "MAX_RESOLUTION", "DEFAULT_MAX_PIXELS"]

MAX_RESOLUTION = 16384
# Validation-time limit on width*height (beyond ComfyUI): 8192x8192 px; raise it per instance.
DEFAULT_MAX_PIXELS = 8192 * 8192


@dataclass
class NodeServices:
    """Model folders, model manager and output options shared by one Loom instance's built-in nodes.

    Parameters:
        paths: the instance's folders (`engine.paths.ModelPaths`).
        models: the engine's model manager, built on first use (`engine.lazy_models`).
        preview_method: "none", "auto", "latent2rgb" or "taesd" (spec 8.4 `--preview-method`).
        disable_metadata: write no PNG text chunks (`--disable-metadata`).
        max_pixels: largest width*height accepted by validation-time checks.
    """

    paths: ModelPaths
    models: LazyModelManager = field(default_factory=LazyModelManager)
    preview_method: str = "none"
    disable_metadata: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def model_manager(self) -> ModelManager:
        """The model manager, created from the engine's device policy on first use."""
        return self.models.real()
