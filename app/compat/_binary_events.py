"""ComfyUI's binary websocket frames as packs send them through `PromptServer.send_sync(<int event>, data)`:
the payload Loom's hub puts after the frame's `[u32 type]` (ComfyUI's `server.py` `send_image` / `send_bytes`)."""
from __future__ import annotations

import json
import struct
from io import BytesIO
from typing import Any

from PIL import Image, ImageOps

from app.hub import BinaryEventTypes

__all__ = ["binary_frame", "encode_image"]

_IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}  # the u32 after a PREVIEW_IMAGE frame's type


def encode_image(image_data: Any) -> tuple[str, bytes]:
    """`[format, PIL image, max_size]` -> (format, encoded bytes); the image is shrunk to fit `max_size` when given."""
    if not isinstance(image_data, (list, tuple)) or len(image_data) != 3:
        raise TypeError(f"a preview image is sent as [format, PIL image, max_size], got {type(image_data).__name__}")
    image_format, image, max_size = image_data
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f"preview image format {image_format!r}: expected one of {sorted(_IMAGE_FORMATS)}")
    if not isinstance(image, Image.Image):
        raise TypeError(f"preview image: expected a PIL image, got {type(image).__name__}")
    if max_size is not None:
        image = ImageOps.contain(image, (int(max_size), int(max_size)), Image.Resampling.BILINEAR)
    buffer = BytesIO()
    image.save(buffer, format=image_format, quality=95, compress_level=1)
    return image_format, buffer.getvalue()


def binary_frame(event: int, data: Any) -> tuple[int, bytes]:
    """(frame type, payload) of a pack's binary event (see `PromptServer.send_sync`); TypeError for data that
    is not what the event carries."""
    if event == BinaryEventTypes.UNENCODED_PREVIEW_IMAGE:
        image_format, encoded = encode_image(data)
        return BinaryEventTypes.PREVIEW_IMAGE, struct.pack(">I", _IMAGE_FORMATS[image_format]) + encoded
    if event == BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA:
        image_data, metadata = data
        image_format, encoded = encode_image(image_data)
        meta = json.dumps({**(metadata or {}), "image_type": f"image/{image_format.lower()}"}).encode()
        return event, struct.pack(">I", len(meta)) + meta + encoded
    if isinstance(data, (bytes, bytearray, memoryview)):
        return event, bytes(data)
    raise TypeError(f"binary websocket event {event}: expected bytes (or a preview image for events "
                    f"{BinaryEventTypes.UNENCODED_PREVIEW_IMAGE} / {BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA}), "
                    f"got {type(data).__name__}")
