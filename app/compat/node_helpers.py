"""ComfyUI's `node_helpers` for packs: conditioning edits, PIL helpers, hashing."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from app.compat._environment import handles_for
from nodes.conditioning import set_values

_loom = handles_for(__name__)  # this Loom instance's objects


def conditioning_set_values(conditioning: list[list[Any]], values: dict[str, Any] | None = None,
                            append: bool = False) -> list[list[Any]]:
    """A copy of `conditioning` with `values` set in every entry's options (lists appended with `append`)."""
    return set_values(conditioning, values or {}, append=append)


def pillow(fn: Callable[..., Any], arg: Any) -> Any:
    """Call a PIL function, retrying once with truncated-image loading allowed (ComfyUI's workaround)."""
    from PIL import ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        return fn(arg)
    except (OSError, SyntaxError, ValueError):
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher() -> Callable[[], Any]:
    """The hash constructor used for upload de-duplication (sha256 unless configured otherwise)."""
    name = str(getattr(_loom.config, "default_hashing_function", "sha256") or "sha256")
    return getattr(hashlib, name, hashlib.sha256)


def string_to_torch_dtype(string: str) -> torch.dtype | None:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Give both [B,H,W,C] images the same channel count (drop or add an opaque alpha)."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., : destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        pad = torch.ones_like(source[..., :1])
        source = torch.cat([source] + [pad] * (destination.shape[-1] - source.shape[-1]), dim=-1)
    return destination, source
