"""ComfyUI's `comfy.diffusers_load` for packs: MODEL / CLIP / VAE of a diffusers pipeline folder, loaded by
Loom's DiffusersLoader code (`engine.diffusers_folder`: the same networks as the single file it came from)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import comfy.sd

from engine.diffusers_folder import first_file as _first_file
from engine.diffusers_folder import load_diffusers as _load_diffusers


def first_file(path: str | os.PathLike[str], filenames: Sequence[str]) -> str | None:
    """The path of the first of ``filenames`` that exists in the folder ``path``, or None."""
    found = _first_file(Path(path), filenames)
    return str(found) if found is not None else None


def load_diffusers(model_path: str | os.PathLike[str], output_vae: bool = True, output_clip: bool = True,
                   embedding_directory: Any = None) -> tuple[Any, Any, Any]:
    """(MODEL, CLIP or None, VAE or None) of a diffusers folder (``model_index.json``, ``unet/``, ``vae/``,
    ``text_encoder/``, ``text_encoder_2/`` for SDXL)."""
    return _load_diffusers(model_path, comfy.sd._manager(), embedding_directory=comfy.sd._one_dir(embedding_directory),
                           output_clip=output_clip, output_vae=output_vae)
