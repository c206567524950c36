"""The one reader of a .safetensors header: the 8-byte little-endian length, then the JSON table of tensors.

No tensor data is read. Every part of Loom that looks at a header (loading, validation checks, /view_metadata,
`comfy.utils.safetensors_header`) goes through `read_safetensors_header`; its errors name the file.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HEADER_LIMIT", "SafetensorsHeader", "SafetensorsHeaderError", "HeaderTooLargeError", "TensorInfo",
           "read_safetensors_header"]

HEADER_LIMIT = 100 * 1024 * 1024  # bytes of JSON; real headers are a few MiB at most


class SafetensorsHeaderError(ValueError):
    """The file is not a readable .safetensors file; the message starts with its path."""


class HeaderTooLargeError(SafetensorsHeaderError):
    """The header's declared length is above the caller's limit."""

    def __init__(self, path: str, length: int, limit: int) -> None:
        super().__init__(f"{path}: safetensors header of {length} bytes is larger than the limit of {limit} bytes")
        self.length = length
        self.limit = limit


@dataclass(frozen=True)
class TensorInfo:
    """One tensor entry: dtype name (``"F16"``, ``"BF16"``, ...), shape, byte range within the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed header: tensors by name (file order), ``__metadata__`` (``{}`` when absent), the raw JSON."""

    path: str
    file_size: int
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]
    raw: bytes

    @property
    def data_start(self) -> int:
        """Byte offset of the data section in the file (tensor ranges are relative to it)."""
        return 8 + len(self.raw)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape."""
        return {name: info.shape for name, info in self.tensors.items()}


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} is not a list of integers: {value!r}")
    return tuple(value)


def _tensor(name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {name!r}: entry is not an object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str):
        raise ValueError(f"tensor {name!r}: missing or non-string 'dtype'")
    offsets = _ints(entry.get("data_offsets"), f"tensor {name!r} 'data_offsets'")
    if len(offsets) != 2:
        raise ValueError(f"tensor {name!r}: 'data_offsets' needs two integers, got {list(offsets)}")
    return TensorInfo(dtype, _ints(entry.get("shape"), f"tensor {name!r} 'shape'"), offsets[0], offsets[1])


def read_safetensors_header(path: str | os.PathLike[str], limit: int = HEADER_LIMIT) -> SafetensorsHeader:
    """Parse the header of `path` once; raise SafetensorsHeaderError (naming the file) if it is not valid."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        with open(name, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) != 8:
                raise ValueError("file shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > limit:
                raise HeaderTooLargeError(name, length, limit)
            if length > size - 8:
                raise ValueError(f"header length {length} does not fit a {size}-byte file")
            raw = fh.read(length)
        table = json.loads(raw)
        if not isinstance(table, dict):
            raise ValueError("header is not a JSON object")
        meta = table.pop("__metadata__", None) or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a JSON object")
        tensors = {str(key): _tensor(str(key), entry) for key, entry in table.items()}
    except SafetensorsHeaderError:
        raise
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SafetensorsHeaderError(f"{name}: not a readable .safetensors file ({exc})") from exc
    return SafetensorsHeader(name, size, tensors, {str(k): str(v) for k, v in meta.items()}, raw)
