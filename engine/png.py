"""PNG helpers: ComfyUI's pixel conversion and `prompt` / `workflow` text chunks (spec section 8.1)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

__all__ = [
    "PngMetadataError",
    "to_uint8",
    "to_pil",
    "build_pnginfo",
    "save_png",
    "read_text_chunks",
    "read_graphs",
]


class PngMetadataError(ValueError):
    """A PNG that cannot be read or whose embedded graph is not valid JSON."""


def to_uint8(pixels: Any) -> np.ndarray:
    """`[H,W,C]` floats 0..1 (numpy or torch) -> uint8 by truncation (`uint8(clip(255*x, 0, 255))`)."""
    if hasattr(pixels, "detach"):
        pixels = pixels.detach().cpu().float().numpy()
    arr = np.asarray(pixels, dtype=np.float32)
    out: np.ndarray = np.clip(255.0 * arr, 0, 255).astype(np.uint8)
    return out


def to_pil(pixels: Any) -> Image.Image:
    """One image `[H,W,C]` (C = 1, 3 or 4) in 0..1 -> PIL image (L, RGB or RGBA)."""
    arr = to_uint8(pixels)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr)


def metadata_text(prompt: Any = None, extra_pnginfo: Mapping[str, Any] | None = None) -> dict[str, str]:
    """ComfyUI's metadata entries, as every format it saves carries them (PNG text chunks, audio / video container
    tags, EXR attributes): ``prompt`` first, then each top-level ``extra_pnginfo`` key, each value as JSON text."""
    entries = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    entries.update((str(key), json.dumps(value)) for key, value in (extra_pnginfo or {}).items())
    return entries


def build_pnginfo(prompt: Any = None, extra_pnginfo: dict[str, Any] | None = None) -> PngInfo | None:
    """One text chunk per `metadata_text` entry; None when both are empty."""
    entries = metadata_text(prompt, extra_pnginfo)
    if not entries:
        return None
    info = PngInfo()
    for key, value in entries.items():
        info.add_text(key, value)
    return info


def save_png(
    path: str | os.PathLike[str],
    pixels: Any,
    *,
    prompt: Any = None,
    extra_pnginfo: dict[str, Any] | None = None,
    compress_level: int = 4,
    metadata: bool = True,
) -> None:
    """Write one `[H,W,C]` image as PNG with ComfyUI's text chunks (unless `metadata` is False)."""
    info = build_pnginfo(prompt, extra_pnginfo) if metadata else None
    to_pil(pixels).save(os.fspath(path), pnginfo=info, compress_level=compress_level)


def read_text_chunks(path: str | os.PathLike[str]) -> dict[str, str]:
    """All tEXt / iTXt / zTXt chunks of a PNG as a dict."""
    try:
        with Image.open(os.fspath(path)) as img:
            img.load()
            text = getattr(img, "text", None)
            chunks = dict(text) if text else {}
            for key, value in img.info.items():
                if isinstance(value, str) and key not in chunks:
                    chunks[key] = value
            return chunks
    except OSError as exc:
        raise PngMetadataError(f"cannot read PNG metadata from {os.fspath(path)}: {exc}") from exc


def read_graphs(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The `(workflow, prompt)` JSON objects embedded in a PNG (each None when absent)."""
    chunks = read_text_chunks(path)
    out: list[dict[str, Any] | None] = []
    for key in ("workflow", "prompt"):
        raw = chunks.get(key)
        if raw is None:
            out.append(None)
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PngMetadataError(f"{os.fspath(path)}: the {key!r} chunk is not valid JSON: {exc}") from exc
        out.append(value if isinstance(value, dict) else None)
    return out[0], out[1]
