"""engine.safetensors_header: the one reader of a .safetensors header (names, dtypes, shapes, offsets, metadata)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.safetensors_header import (
    HeaderTooLargeError,
    SafetensorsHeaderError,
    TensorInfo,
    read_safetensors_header,
)


def test_reads_tensors_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.zeros(2, 3, dtype=torch.float16), "b": torch.ones(4, dtype=torch.float32)},
              str(path), metadata={"modelspec.title": "tiny"})
    header = read_safetensors_header(path)
    assert header.metadata == {"modelspec.title": "tiny"}
    assert header.shapes() == {"a.weight": (2, 3), "b": (4,)}
    a, b = header.tensors["a.weight"], header.tensors["b"]
    assert (a.dtype, b.dtype) == ("F16", "F32")
    assert a.end - a.start == 12 and b.end - b.start == 16
    data = path.read_bytes()[header.data_start:]
    assert data[b.start:b.end] == torch.ones(4).numpy().tobytes()
    assert header.file_size == path.stat().st_size and json.loads(header.raw)["b"]["shape"] == [4]


def _raw(path: Path, header: bytes, declared: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if declared is None else declared) + header)
    return path


@pytest.mark.parametrize("content", [b"", b"\x01\x02"])
def test_short_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(content)
    with pytest.raises(SafetensorsHeaderError, match=r"short\.safetensors.*8-byte"):
        read_safetensors_header(path)


def test_bad_headers_name_the_file(tmp_path: Path) -> None:
    cases = {"json.safetensors": (b"{not json", None, "not a readable"),
             "list.safetensors": (b"[1, 2]", None, "not a JSON object"),
             "fit.safetensors": (b"{}", 4096, "does not fit"),
             "shape.safetensors": (b'{"x": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}', None,
                                   "'shape' is not a list"),
             "offsets.safetensors": (b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0]}}', None,
                                     "two integers")}
    for name, (header, declared, message) in cases.items():
        with pytest.raises(SafetensorsHeaderError) as info:
            read_safetensors_header(_raw(tmp_path / name, header, declared))
        assert name in str(info.value) and message in str(info.value)


def test_limit(tmp_path: Path) -> None:
    path = _raw(tmp_path / "big.safetensors", b'{"x": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}')
    assert read_safetensors_header(path).tensors["x"] == TensorInfo("F32", (0,), 0, 0)
    with pytest.raises(HeaderTooLargeError, match="big.safetensors") as info:
        read_safetensors_header(path, limit=8)
    assert info.value.limit == 8 and info.value.length > 8


def test_missing_file_is_a_header_error(tmp_path: Path) -> None:
    with pytest.raises(SafetensorsHeaderError, match="absent.safetensors"):
        read_safetensors_header(tmp_path / "absent.safetensors")
