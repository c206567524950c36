"""ComfyUI's `comfy.supported_models_base` for packs: `BASE`, the base class of the model-family configs in
`comfy.supported_models` (Loom's `engine.model_configs.ModelConfig`, views of `engine.families`), and `ClipTarget`."""
from __future__ import annotations

from typing import Any

from engine.model_configs import ModelConfig as BASE

__all__ = ["BASE", "ClipTarget"]


class ClipTarget:
    """A (tokenizer, clip) class pair, as ComfyUI's configs return from `clip_target()`."""

    def __init__(self, tokenizer: Any, clip: Any) -> None:
        self.clip = clip
        self.tokenizer = tokenizer
        self.params: dict[str, Any] = {}
