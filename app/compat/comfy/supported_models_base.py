"""ComfyUI's `comfy.supported_models_base` for packs: `BASE`, the base class of the model-family configs in
`comfy.supported_models`, and `ClipTarget`. Loom's configs are views of `engine.families` (see there)."""
from __future__ import annotations

from typing import Any, ClassVar

from engine.families import Family

__all__ = ["BASE", "ClipTarget"]


class BASE:
    """A model family's config: `family` (Loom's `engine.families.Family`), `latent_format`, `unet_extra_config`.

    ComfyUI's configs also build models (`get_model`); Loom builds them with `engine.loading`, so these
    carry only the family's facts."""

    family: ClassVar[Family | None] = None
    unet_extra_config: ClassVar[dict[str, Any]] = {"num_heads": -1, "num_head_channels": 64}
    sampling_settings: ClassVar[dict[str, Any]] = {}
    latent_format: ClassVar[Any] = None

    def __init__(self, unet_config: dict[str, Any] | None = None) -> None:
        self.unet_config: dict[str, Any] = dict(unet_config or {})

    @classmethod
    def matches(cls, unet_config: dict[str, Any], state_dict: Any = None) -> bool:
        """ComfyUI detects families from UNet configs; Loom detects them from checkpoint keys (engine.detect)."""
        return False


class ClipTarget:
    """A (tokenizer, clip) class pair, as ComfyUI's configs return from `clip_target()`."""

    def __init__(self, tokenizer: Any, clip: Any) -> None:
        self.clip = clip
        self.tokenizer = tokenizer
        self.params: dict[str, Any] = {}
