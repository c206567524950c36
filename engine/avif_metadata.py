"""ComfyUI's metadata in an AVIF file: an ``Exif`` item (ISO/IEC 23008-12 HEIF) holding the prompt and workflow.

The Exif item carries a TIFF block whose ``Model`` tag (0x0110) reads ``prompt:<json>`` and whose tags counting
down from ``Make`` (0x010F) read ``<key>:<json>`` for each ``extra_pnginfo`` key, the layout ComfyUI's frontend
reads. ``add_exif`` rewrites a file PyAV wrote (``ftyp``, ``meta``, optional ``moov``, then one ``mdat`` last):
the Exif bytes go to the end of ``mdat``; ``meta`` gains the item (``iinf``), its location (``iloc``) and a
``cdsc`` reference to the primary image (``iref``); every stored offset moves by the bytes ``meta`` grew
(``iloc`` extents, and a sequence's ``stco`` / ``co64`` chunk offsets). A sequence's ``avis`` major brand
becomes ``avif`` (still listed as compatible) so readers that look for ``avif`` find the item.
"""
from __future__ import annotations

import io
import json
import os
import struct
from typing import Any

__all__ = ["exif_block", "add_exif", "read_exif_item"]

MODEL_TAG = 0x0110
MAKE_TAG = 0x010F
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


class _Box:
    """One ISO-BMFF box: where it starts, its header length, its type and total size."""

    def __init__(self, start: int, header: int, kind: bytes, size: int) -> None:
        self.start, self.header, self.kind, self.size = start, header, kind, size

    @property
    def body(self) -> int:
        return self.start + self.header


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[_Box]:
    out = []
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise ValueError(f"truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} at byte {pos} has a bad size {size}")
        out.append(_Box(pos, header, kind, size))
        pos += size
    return out


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def exif_block(prompt: Any, extra_pnginfo: dict[str, Any] | None) -> bytes:
    """The Exif item payload (a zero offset to the TIFF header, then the TIFF block), or b"" when empty."""
    from PIL import Image

    exif = Image.Exif()
    if prompt is not None:
        exif[MODEL_TAG] = "prompt:" + json.dumps(prompt)
    for tag, (key, value) in zip(range(MAKE_TAG, 0, -1), (extra_pnginfo or {}).items(), strict=False):
        exif[tag] = f"{key}:{json.dumps(value)}"
    if not len(exif):
        return b""
    return b"\0\0\0\0" + exif.tobytes()[len(b"Exif\0\0"):]


def _full_box_children(meta: bytes) -> dict[bytes, _Box]:
    if meta[4:8] != b"meta":
        raise ValueError("no meta box")
    return {b.kind: b for b in _boxes(meta, 12, len(meta))}  # meta is a full box: 4 bytes version/flags


def _rewrite_meta(meta: bytes, exif_offset: int, exif_length: int, delta: int) -> bytes:
    """``meta`` with the Exif item added and every iloc extent offset moved by ``delta``."""
    children = _full_box_children(meta)
    for needed in (b"pitm", b"iloc", b"iinf"):
        if needed not in children:
            raise ValueError(f"meta box lacks {needed.decode()}")
    pitm = children[b"pitm"]
    if meta[pitm.body] != 0:
        raise ValueError("only pitm version 0 is supported")
    (primary,) = struct.unpack_from(">H", meta, pitm.body + 4)

    box = children[b"iloc"]
    iloc = bytearray(meta[box.start:box.start + box.size])
    version, sizes, base_and_index = iloc[box.header], iloc[box.header + 4], iloc[box.header + 5]
    if version != 0 or sizes != 0x44 or base_and_index != 0:
        raise ValueError("only iloc version 0 with 4-byte offsets and lengths is supported")
    (count,) = struct.unpack_from(">H", iloc, box.header + 6)
    pos = box.header + 8
    ids = []
    for _ in range(count):
        item_id, _reference, extents = struct.unpack_from(">HHH", iloc, pos)
        ids.append(item_id)
        pos += 6
        for _ in range(extents):
            (offset,) = struct.unpack_from(">I", iloc, pos)
            struct.pack_into(">I", iloc, pos, offset + delta)
            pos += 8
    exif_id = max(ids, default=0) + 1
    struct.pack_into(">H", iloc, box.header + 6, count + 1)
    iloc += struct.pack(">HHHII", exif_id, 0, 1, exif_offset, exif_length)
    struct.pack_into(">I", iloc, 0, len(iloc))

    box = children[b"iinf"]
    iinf = bytearray(meta[box.start:box.start + box.size])
    if iinf[box.header] != 0:
        raise ValueError("only iinf version 0 is supported")
    (entries,) = struct.unpack_from(">H", iinf, box.header + 4)
    struct.pack_into(">H", iinf, box.header + 4, entries + 1)
    iinf += _box(b"infe", b"\x02\0\0\0" + struct.pack(">HH4s", exif_id, 0, b"Exif") + b"\0")
    struct.pack_into(">I", iinf, 0, len(iinf))

    cdsc = _box(b"cdsc", struct.pack(">HHH", exif_id, 1, primary))
    if b"iref" in children:
        box = children[b"iref"]
        iref = bytearray(meta[box.start:box.start + box.size]) + cdsc
        struct.pack_into(">I", iref, 0, len(iref))
    else:
        iref = bytearray(_box(b"iref", b"\0\0\0\0" + cdsc))

    out = bytearray(meta[:12])
    for child in _boxes(meta, 12, len(meta)):
        if child.kind == b"iloc":
            out += iloc
        elif child.kind == b"iinf":
            out += iinf
            if b"iref" not in children:
                out += iref
        elif child.kind == b"iref":
            out += iref
        else:
            out += meta[child.start:child.start + child.size]
    struct.pack_into(">I", out, 0, len(out))
    return bytes(out)


def _shift_chunk_offsets(moov: bytes, delta: int) -> bytes:
    out = bytearray(moov)

    def walk(start: int, end: int) -> None:
        for box in _boxes(out, start, end):
            if box.kind in _CONTAINERS:
                walk(box.body, box.start + box.size)
            elif box.kind in (b"stco", b"co64"):
                width, fmt = (4, ">I") if box.kind == b"stco" else (8, ">Q")
                (count,) = struct.unpack_from(">I", out, box.body + 4)
                for i in range(count):
                    at = box.body + 8 + i * width
                    (offset,) = struct.unpack_from(fmt, out, at)
                    struct.pack_into(fmt, out, at, offset + delta)

    walk(0, len(out))
    return bytes(out)


def add_exif(path: str | os.PathLike[str], exif: bytes) -> None:
    """Rewrite the AVIF at ``path`` with ``exif`` (from ``exif_block``) as its Exif item."""
    if not exif:
        return
    with open(path, "rb") as fh:
        data = fh.read()
    top = _boxes(data, 0, len(data))
    kinds = [b.kind for b in top]
    if b"meta" not in kinds or kinds[-1] != b"mdat" or kinds.index(b"meta") > kinds.index(b"mdat"):
        raise ValueError(f"unexpected AVIF layout {[k.decode() for k in kinds]}")
    meta_box = top[kinds.index(b"meta")]
    meta = data[meta_box.start:meta_box.start + meta_box.size]
    delta = len(_rewrite_meta(meta, 0, len(exif), 0)) - len(meta)
    new_meta = _rewrite_meta(meta, len(data) + delta, len(exif), delta)
    out = io.BytesIO()
    for box in top:
        raw = data[box.start:box.start + box.size]
        if box.kind == b"ftyp" and raw[8:12] == b"avis" and b"avif" in raw[16:]:
            raw = raw[:8] + b"avif" + raw[12:]
        elif box.kind == b"meta":
            raw = new_meta
        elif box.kind == b"moov":
            raw = _shift_chunk_offsets(raw, delta)
        elif box.kind == b"mdat":
            size = box.size + len(exif)
            if box.header == 16:
                header = struct.pack(">I4sQ", 1, b"mdat", size)
            elif size > 0xFFFFFFFF:
                raise ValueError("the AVIF media data outgrows its 32-bit size")
            else:
                header = struct.pack(">I4s", size, b"mdat")
            raw = header + raw[box.header:] + exif
        out.write(raw)
    with open(path, "wb") as fh:
        fh.write(out.getvalue())


def read_exif_item(data: bytes) -> bytes | None:
    """The payload of an AVIF's ``Exif`` item (None when it has none)."""
    top = {b.kind: b for b in _boxes(data, 0, len(data))}
    if b"meta" not in top:
        return None
    meta = data[top[b"meta"].start:top[b"meta"].start + top[b"meta"].size]
    children = _full_box_children(meta)
    iinf = children[b"iinf"]
    exif_id = None
    for infe in _boxes(meta, iinf.body + 6, iinf.start + iinf.size):
        item_id, _protection, kind = struct.unpack_from(">HH4s", meta, infe.body + 4)
        if kind == b"Exif":
            exif_id = item_id
    if exif_id is None:
        return None
    iloc = children[b"iloc"]
    (count,) = struct.unpack_from(">H", meta, iloc.body + 6)
    pos = iloc.body + 8
    for _ in range(count):
        item_id, _reference, extents = struct.unpack_from(">HHH", meta, pos)
        pos += 6
        for _ in range(extents):
            offset, length = struct.unpack_from(">II", meta, pos)
            pos += 8
            if item_id == exif_id:
                return data[offset:offset + length]
    return None
