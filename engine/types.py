"""The payloads that flow between nodes: LATENT, CONDITIONING and MODEL (ComfyUI's wire-level shapes).

torch-free at run time (the node catalogue imports it for /object_info); tensors appear in annotations only.

    Latent        the LATENT dict: "samples" [B,C,h,w] raw latent, optional "batch_index" and "noise_mask"
    Conditioning  the CONDITIONING list of [cross_attn, options] pairs
    CondOptions   one pair's options dict (pooled_output, area, strength, mask, start/end_percent, SDXL sizes, ...)
    Model         the MODEL: engine.handles.ModelHandle (imported under TYPE_CHECKING by users)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Required, TypedDict

if TYPE_CHECKING:
    import torch

__all__ = ["Latent", "CondOptions", "CondPair", "Conditioning", "cond_tensor", "cond_options", "latent_copy"]


class Latent(TypedDict, total=False):
    """ComfyUI's LATENT dict. Nodes copy it and replace keys, so keys they do not know survive."""

    samples: Required[torch.Tensor]
    batch_index: list[int]
    noise_mask: torch.Tensor


# The options of one conditioning entry. Values are heterogeneous by design (tensors, floats, area tuples,
# control objects) and custom node packs add their own keys, so the value type is Any, in this one place.
CondOptions = dict[str, Any]

# One [cross_attn, options] entry. A list, not a tuple: ComfyUI packs index and replace c[1] in place.
# Read it through cond_tensor / cond_options for typed access.
CondPair = list[Any]

Conditioning = list[CondPair]


def cond_tensor(pair: CondPair) -> torch.Tensor:
    """The cross-attention tensor [B, tokens, dim] of one conditioning entry."""
    tensor: torch.Tensor = pair[0]
    return tensor


def cond_options(pair: CondPair) -> CondOptions:
    """The options dict of one conditioning entry."""
    options: CondOptions = pair[1]
    return options


def latent_copy(latent: Latent, samples: torch.Tensor) -> Latent:
    """A copy of ``latent`` (all its keys) with new ``samples``."""
    out = latent.copy()
    out["samples"] = samples
    return out
