"""Animated WebP / PNG writing with Pillow, with the metadata ComfyUI embeds (the prompt and workflow).

APNG: one private `comf` chunk per entry after the image data, `key\\0json`. WebP: EXIF tag 0x0110 (Model) holds
`prompt:<json>`, and each `extra_pnginfo` entry goes to 0x010F (Make) downwards as `key:<json>`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.png import to_pil

__all__ = ["WEBP_METHODS", "frame_duration_ms", "save_animated_png", "save_animated_webp"]

WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def frame_duration_ms(fps: float) -> int:
    """Per-frame duration in whole milliseconds, truncated (int(1000 / fps))."""
    return int(1000.0 / fps)


def _apng_info(prompt: Any, extra_pnginfo: dict[str, Any] | None) -> PngInfo | None:
    if prompt is None and not extra_pnginfo:
        return None
    info = PngInfo()
    if prompt:
        info.add(b"comf", b"prompt\0" + json.dumps(prompt).encode("latin-1", "strict"), after_idat=True)
    for key, value in (extra_pnginfo or {}).items():
        info.add(b"comf", key.encode("latin-1", "strict") + b"\0" + json.dumps(value).encode("latin-1", "strict"),
                 after_idat=True)
    return info


def save_animated_png(path: str | os.PathLike[str], frames: Sequence[Any], fps: float, compress_level: int, *,
                      prompt: Any = None, extra_pnginfo: dict[str, Any] | None = None,
                      metadata: bool = True) -> None:
    """Write `frames` (each `[H,W,C]` 0..1) as one APNG."""
    images = [to_pil(frame) for frame in frames]
    info = _apng_info(prompt, extra_pnginfo) if metadata else None
    images[0].save(path, pnginfo=info, compress_level=compress_level, save_all=True,
                   duration=frame_duration_ms(fps), append_images=images[1:])


def _webp_exif(image: Image.Image, prompt: Any, extra_pnginfo: dict[str, Any] | None) -> Image.Exif:
    exif = image.getexif()
    if prompt is not None:
        exif[0x0110] = f"prompt:{json.dumps(prompt)}"
    tag = 0x010F
    for key, value in (extra_pnginfo or {}).items():
        exif[tag] = f"{key}:{json.dumps(value)}"
        tag -= 1
    return exif


def save_animated_webp(path: str | os.PathLike[str], frames: Sequence[Any], fps: float, lossless: bool,
                       quality: int, method: int, *, prompt: Any = None,
                       extra_pnginfo: dict[str, Any] | None = None, metadata: bool = True) -> None:
    """Write `frames` (each `[H,W,C]` 0..1) as one animated WebP."""
    images = [to_pil(frame) for frame in frames]
    exif = _webp_exif(images[0], prompt, extra_pnginfo) if metadata else images[0].getexif()
    images[0].save(path, save_all=True, duration=frame_duration_ms(fps), append_images=images[1:], exif=exif,
                   lossless=lossless, quality=quality, method=method)
