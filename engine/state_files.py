"""Reading model files safely: memory-mapped safetensors, weights-only torch pickles, clear errors."""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["read_state_dict", "read_shapes"]

_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pt2", ".pkl"}


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}. Put it in the right models/ folder and refresh")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
        # load_file maps the file and builds each tensor once; no second full copy is made later
        # because the networks take these tensors with load_state_dict(assign=True)
        return load_file(str(path), device="cpu"), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
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
