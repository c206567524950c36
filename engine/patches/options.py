"""Helpers over ComfyUI's ``model_options`` for the patches: a copy-on-write attention replacement and the
random generator of one attention call."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["with_patch_replace", "call_generator"]


def with_patch_replace(model_options: dict[str, Any], patch: Callable[..., Any], name: str, block_name: str,
                       number: int, transformer_index: int | None = None) -> dict[str, Any]:
    """A copy of ``model_options`` whose ``patches_replace[name]`` maps ``(block_name, number[, transformer_index])``
    to ``patch`` (ComfyUI's ``set_model_options_patch_replace``); the dicts of the input are not modified."""
    to = dict(model_options.get("transformer_options") or {})
    replace = dict(to.get("patches_replace") or {})
    table = dict(replace.get(name) or {})
    key = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
    table[key] = patch
    replace[name] = table
    to["patches_replace"] = replace
    return {**model_options, "transformer_options": to}


def call_generator(extra_options: dict[str, Any], salt: str) -> torch.Generator:
    """A CPU generator seeded from this attention call's sigma and block position.

    ComfyUI's HyperTile and ToMe patches draw from torch's global generator, so their choices depend on
    everything that ran before; here the same prompt gives the same choices on every run and machine."""
    sigmas = extra_options.get("sigmas")
    sigma = float(sigmas.reshape(-1)[0]) if isinstance(sigmas, torch.Tensor) and sigmas.numel() else 0.0
    where = (salt, sigma, extra_options.get("block"), extra_options.get("block_index", 0))
    return torch.Generator().manual_seed(zlib.crc32(repr(where).encode()))
