"""Helper functions packs import from `comfy_extras.nodes_mask` (listed in `app/compat/_extras.py`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.image_ops import paste

if TYPE_CHECKING:
    import torch


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None = None,
              multiplier: int = 8, resize_source: bool = False) -> torch.Tensor:
    """ComfyUI's `nodes_mask.composite`: ``source`` pasted into ``destination`` (both [B,C,H,W]) at pixel offset
    (x, y) divided by ``multiplier`` (8 for latents, 1 for images), through ``mask``; ``destination`` is written in
    place and returned, as in ComfyUI (Loom's `engine.image_ops.paste`)."""
    if x < 0 or y < 0:
        raise ValueError(f"composite: offsets must be >= 0, got x={x}, y={y}; crop the source instead")
    pasted = paste(destination, source.to(destination.device), x // multiplier, y // multiplier, mask, resize_source)
    destination.copy_(pasted)
    return destination
