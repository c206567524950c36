"""Textual-inversion embedding files looked up by name in an embeddings folder."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.errors import CheckpointError
from engine.state_files import read_state_dict

__all__ = ["EmbeddingStore"]

_SUFFIXES = (".safetensors", ".pt", ".bin", ".sft", "")


class EmbeddingStore:
    """Finds ``<name>`` (+ .safetensors/.pt/.bin) in a folder and returns its [N, width] vectors."""

    def __init__(self, directory: str | Path, width: int, key: str = "clip_l") -> None:
        self.directory = Path(directory)
        self.width = width
        self.key = key
        self._cache: dict[str, torch.Tensor] = {}

    def _find(self, name: str) -> Path | None:
        # confine by the normalised name, not the resolved target: a symlinked file in the folder is fine,
        # "../x" is not
        base = Path(os.path.abspath(self.directory))
        for suffix in _SUFFIXES:
            candidate = Path(os.path.normpath(base / (name + suffix)))
            if base in candidate.parents and candidate.is_file():
                return candidate
        return None

    def get(self, name: str) -> torch.Tensor | None:
        """Vectors of embedding ``name`` ([N, width], float32) or None when no such file exists."""
        if name in self._cache:
            return self._cache[name]
        path = self._find(name)
        if path is None:
            return None
        sd, _ = read_state_dict(path)
        # SDXL files hold one tensor per tower ("clip_l", "clip_g"); A1111 files one "emb_params" (.safetensors)
        # or "string_to_param.*" (.pt)
        candidates = [v for k, v in sd.items() if k in (self.key, "emb_params") or k.startswith("string_to_param.")]
        if not candidates:
            candidates = [v for v in sd.values() if v.ndim in (1, 2) and v.shape[-1] == self.width]
        if not candidates:
            raise CheckpointError(f"embedding {path.name}: no [N, {self.width}] tensor found for this text "
                                  "encoder (wrong model family?)")
        vecs = candidates[0].float()
        vecs = vecs[None] if vecs.ndim == 1 else vecs.reshape(-1, vecs.shape[-1])
        if vecs.shape[-1] != self.width:
            raise CheckpointError(f"embedding {path.name} has width {vecs.shape[-1]}, but the text encoder "
                                  f"expects {self.width}")
        self._cache[name] = vecs
        return vecs
