"""Reading model files safely: memory-mapped safetensors (zero-copy), weights-only torch pickles, clear errors."""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import CheckpointError, UnsafeCheckpointError
from engine.safetensors_header import read_safetensors_header

__all__ = ["read_state_dict", "read_shapes"]

_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pt2", ".pkl"}


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}. Put it in the right models/ folder and refresh")


# safetensors dtype -> (numpy storage dtype, torch dtype to view it as, or None)
_ST_DTYPES: dict[str, tuple[Any, str | None]] = {
    "F64": (np.float64, None), "F32": (np.float32, None), "F16": (np.float16, None), "BF16": (np.uint16, "bfloat16"),
    "I64": (np.int64, None), "I32": (np.int32, None), "I16": (np.int16, None), "I8": (np.int8, None),
    "U8": (np.uint8, None), "BOOL": (np.bool_, None), "F8_E4M3": (np.uint8, "float8_e4m3fn"),
    "F8_E5M2": (np.uint8, "float8_e5m2"),
}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors backed by one copy-on-write memory map of the file: nothing is read until used, and pages of a
    file loaded by several loaders are shared through the page cache rather than copied per load."""
    try:
        header = read_safetensors_header(path)
        size, base, metadata = header.file_size, header.data_start, dict(header.metadata)
        mm = np.memmap(path, mode="c", dtype=np.uint8) if size > base else np.zeros(0, np.uint8)
        out: dict[str, torch.Tensor] = {}
        for key, info in header.tensors.items():
            np_dtype, view = _ST_DTYPES[info.dtype]
            start, end, shape = info.start, info.end, list(info.shape)
            count = int(np.prod(shape)) if shape else 1
            if end - start != count * np.dtype(np_dtype).itemsize or base + end > size or start > end:
                raise ValueError(f"tensor {key!r} ({info.dtype} {shape}) does not match its byte range "
                                 f"{start}..{end} of a {size - base}-byte data section")
            tensor = torch.from_numpy(mm[base + start:base + end].view(np_dtype).reshape(shape))
            out[key] = tensor.view(getattr(torch, view)) if view else tensor
        return out, metadata
    except KeyError as exc:
        raise CheckpointError(f"cannot read {path.name}: unsupported or missing tensor field {exc} in the "
                              ".safetensors header. Convert the file with a current safetensors version") from exc
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot read {path.name}: the .safetensors file is corrupt or truncated ({exc}). "
            "Download it again (compare its size / hash with the source)"
        ) from exc


def _read_pickle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # mmap needs the zip format; legacy pickles load without it
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refused to load {path.name}: this pickle needs to run code to load (weights_only=True rejected "
            f"it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Use a .safetensors version "
            "of the model instead"
        ) from exc
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {path.name}: the file is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Download it again"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path.name}: expected a dict of tensors, found {type(obj).__name__}")
    return _flatten(obj), {}


def _flatten(obj: Mapping[Any, Any], prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of a (nested) dict with dotted keys; A1111 embeddings nest theirs (``string_to_param.*``)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[prefix + str(k)] = v
        elif isinstance(v, Mapping) and depth < 2:
            out.update(_flatten(v, f"{prefix}{k}.", depth + 1))
    return out


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a model file (.safetensors memory-mapped; .ckpt/.pt weights-only)."""
    p = Path(path)
    _check_exists(p)
    if p.suffix.lower() in (".safetensors", ".sft"):
        return _read_safetensors(p)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        return _read_pickle(p)
    raise CheckpointError(f"{p.name}: unsupported model file type {p.suffix!r}; use .safetensors or .ckpt/.pt")


def read_shapes(sd: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape map of a state dict."""
    return {k: tuple(v.shape) for k, v in sd.items()}
