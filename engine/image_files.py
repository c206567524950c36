"""Still images in the formats of ComfyUI's ``SaveImageAdvanced``: 8/16-bit PNG and 32-bit float EXR (PyAV),
with ComfyUI's metadata (``prompt`` and each ``extra_pnginfo`` key as JSON text).

* PNG: integer pixels by truncation (``int(x * 255)`` / ``int(x * 65535)``, clamped); the metadata as ``tEXt``
  chunks right after ``IHDR``. Pixels are written as given (PNG is delivered sRGB-encoded).
* EXR: scene-linear float32, never clamped; the input is decoded from ``input_color_space`` first (sRGB ->
  the inverse sRGB curve, HDR -> the inverse HLG OETF, linear -> unchanged). The metadata as ``string`` header
  attributes plus a ``chromaticities`` attribute naming the primaries (Rec.709, or Rec.2020 for HDR); the
  chunk offset table after the header is shifted by the bytes added, so the file stays readable.

One ``[H,W,C]`` image (C = 1, 3 or 4; or ``[H,W]`` grayscale) per file.
"""
from __future__ import annotations

import struct
import zlib
from fractions import Fraction

import numpy as np
import torch

from engine import color_space
from engine.image_format_names import EXR_DEPTHS, EXR_SPACES, PNG_DEPTHS

__all__ = ["PNG_DEPTHS", "EXR_DEPTHS", "EXR_SPACES", "encode_png", "encode_exr", "png_with_text",
           "exr_with_attributes", "read_png_text", "read_exr_attributes"]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXR_MAGIC = b"\x76\x2f\x31\x01"
# (frame layout handed to PyAV, layout the encoder takes) by (bit depth, channels)
_PNG_FORMATS = {("8-bit", 1): ("gray", "gray"), ("8-bit", 3): ("rgb24", "rgb24"), ("8-bit", 4): ("rgba", "rgba"),
                ("16-bit", 1): ("gray16le", "gray16be"), ("16-bit", 3): ("rgb48le", "rgb48be"),
                ("16-bit", 4): ("rgba64le", "rgba64be")}
_EXR_FORMATS = {1: "grayf32le", 3: "gbrpf32le", 4: "gbrapf32le"}
# scanlines per chunk of each EXR compression (OpenEXR file layout): none, rle, zips, zip, piz, pxr24, b44,
# b44a, dwaa, dwab
_EXR_LINES_PER_CHUNK = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256)
_EXR_PRIMARIES = {"Rec.709": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
                  "Rec.2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290)}


def _hwc(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 2:
        image = image.unsqueeze(-1)  # grayscale given mask-style, without a channel axis
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected one image [H,W,C] with 1, 3 or 4 channels, got shape {list(image.shape)}")
    return image


def _encode(codec_name: str, pixels: np.ndarray, frame_format: str, codec_format: str) -> bytes:
    import av
    from av.video.codeccontext import VideoCodecContext

    codec = av.CodecContext.create(codec_name, "w")
    assert isinstance(codec, VideoCodecContext)
    codec.width, codec.height = pixels.shape[1], pixels.shape[0]
    codec.pix_fmt = codec_format
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(pixels if pixels.shape[-1] > 1 else pixels[..., 0], format=frame_format)
    if frame_format != codec_format:
        frame = frame.reformat(format=codec_format)
    frame.pts = 0
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def encode_png(image: torch.Tensor, bit_depth: str) -> bytes:
    """One image as PNG bytes at ``bit_depth`` (one of ``PNG_DEPTHS``), without metadata."""
    image = _hwc(image)
    if bit_depth not in PNG_DEPTHS:
        raise ValueError(f"PNG bit depth {bit_depth!r} is not one of {list(PNG_DEPTHS)}")
    top = 255.0 if bit_depth == "8-bit" else 65535.0
    ints = (image.detach().float().cpu() * top).clamp(0, top).to(torch.int32).numpy()
    pixels = ints.astype(np.uint8 if bit_depth == "8-bit" else np.uint16)
    frame_format, codec_format = _PNG_FORMATS[(bit_depth, int(image.shape[-1]))]
    return _encode("png", pixels, frame_format, codec_format)


def to_scene_linear(image: torch.Tensor, input_color_space: str) -> torch.Tensor:
    """What an EXR stores: ``image`` decoded from ``input_color_space`` (alpha untouched)."""
    if input_color_space not in EXR_SPACES:
        raise ValueError(f"EXR input colour space {input_color_space!r} is not one of {list(EXR_SPACES)}")
    image = image.float()
    if input_color_space == "linear":
        return image
    decode = color_space.srgb_to_linear if input_color_space == "sRGB" else color_space.hlg_to_linear
    if image.shape[-1] == 4:
        return torch.cat((decode(image[..., :3]), image[..., 3:]), dim=-1)
    return decode(image)


def encode_exr(image: torch.Tensor, input_color_space: str) -> bytes:
    """One image as a float32 EXR (scene-linear, see ``to_scene_linear``), without metadata."""
    image = _hwc(image)
    pixels = to_scene_linear(image, input_color_space).detach().cpu().numpy().astype(np.float32)
    layout = _EXR_FORMATS[int(image.shape[-1])]
    return _encode("exr", pixels, layout, layout)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_text(png: bytes, items: list[tuple[str, str]]) -> bytes:
    """``png`` with one ``tEXt`` chunk per ``(keyword, text)`` inserted right after ``IHDR``."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG stream")
    if not items:
        return png
    (ihdr_length,) = struct.unpack(">I", png[8:12])
    end = 8 + 12 + ihdr_length
    chunks = b"".join(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1", "replace"))
                      for key, text in items)
    return png[:end] + chunks + png[end:]


def read_png_text(png: bytes) -> dict[str, str]:
    """Every ``tEXt`` chunk of a PNG stream as ``{keyword: text}``."""
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"tEXt":
            key, _, text = png[pos + 8:pos + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        pos += 12 + length
    return out


def _exr_attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _exr_header(exr: bytes) -> tuple[list[tuple[str, str, bytes]], int]:
    """The header attributes ``(name, type, value)`` of a single-part scanline EXR and the offset of the byte
    that ends the header."""
    if not exr.startswith(EXR_MAGIC) or len(exr) < 9:
        raise ValueError("not an OpenEXR stream")
    attributes = []
    pos = 8
    while exr[pos] != 0:
        name_end = exr.index(b"\0", pos)
        type_end = exr.index(b"\0", name_end + 1)
        (size,) = struct.unpack("<i", exr[type_end + 1:type_end + 5])
        value = exr[type_end + 5:type_end + 5 + size]
        attributes.append((exr[pos:name_end].decode("latin-1"), exr[name_end + 1:type_end].decode("latin-1"), value))
        pos = type_end + 5 + size
    return attributes, pos


def read_exr_attributes(exr: bytes) -> dict[str, tuple[str, bytes]]:
    """The header attributes of an EXR stream as ``{name: (type, raw value)}``."""
    return {name: (kind, value) for name, kind, value in _exr_header(exr)[0]}


def exr_with_attributes(exr: bytes, items: list[tuple[str, str]], primaries: str) -> bytes:
    """``exr`` with a ``string`` attribute per ``(name, text)`` and ``chromaticities`` set to ``primaries``
    (``"Rec.709"`` or ``"Rec.2020"``) appended to its header, the chunk offsets shifted to match."""
    attributes, end = _exr_header(exr)
    found = {name: (kind, value) for name, kind, value in attributes}
    if "dataWindow" not in found or "compression" not in found:
        raise ValueError("EXR header lacks dataWindow or compression")
    added = b"".join(_exr_attribute(name, "string", text.encode()) for name, text in items)
    added += _exr_attribute("chromaticities", "chromaticities", struct.pack("<8f", *_EXR_PRIMARIES[primaries]))
    _, y_min, _, y_max = struct.unpack("<4i", found["dataWindow"][1])
    lines = _EXR_LINES_PER_CHUNK[found["compression"][1][0]]
    chunks = (y_max - y_min + lines) // lines
    table = end + 1
    offsets = struct.unpack(f"<{chunks}Q", exr[table:table + 8 * chunks])
    shifted = struct.pack(f"<{chunks}Q", *(offset + len(added) for offset in offsets))
    return exr[:end] + added + b"\0" + shifted + exr[table + 8 * chunks:]
