"""The payloads that flow between nodes: LATENT, CONDITIONING and MODEL (ComfyUI's wire-level shapes).

torch-free at run time (the node catalogue imports it for /object_info); tensors appear in annotations only.

    Latent        the LATENT dict: "samples" [B,C,h,w] raw latent, optional "batch_index" and "noise_mask"
    Conditioning  the CONDITIONING list of [cross_attn, options] pairs
    CondOptions   one pair's options dict (pooled_output, area, strength, mask, start/end_percent, SDXL sizes, ...)
    Model         the MODEL: engine.handles.ModelHandle (imported under TYPE_CHECKING by users)
    NoiseSource   a NOISE value (engine.sampling.custom.GaussianNoise / EmptyNoise, or a pack's)
    Guider        a GUIDER value (engine.sampling.custom.CFGGuide, or a pack's)
    SamplerValue  a SAMPLER value: anything engine.sampling.custom.resolve_sampler accepts
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Required, TypedDict

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle

__all__ = ["Latent", "CondOptions", "CondPair", "Conditioning", "NoiseSource", "Guider", "SamplerValue",
           "ProgressCallback", "cond_tensor", "cond_options", "latent_copy"]


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


# callback(step, x0, x, total_steps) after each sampler step (ComfyUI's sampler callback).
ProgressCallback = Callable[[int, "torch.Tensor", "torch.Tensor", int], None]

# SamplerChoice, SamplerSpec, a sampler name or a ComfyUI KSAMPLER-like object; resolve_sampler checks it.
SamplerValue = object


class NoiseSource(Protocol):
    """A NOISE value: the initial noise for a latent."""

    @property
    def seed(self) -> int: ...

    def generate_noise(self, input_latent: Latent) -> torch.Tensor: ...


class Guider(Protocol):
    """A GUIDER value: runs the sampler over the given sigmas (ComfyUI's ``CFGGuider`` interface)."""

    @property
    def model_patcher(self) -> ModelHandle: ...

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: SamplerValue,
               sigmas: torch.Tensor, denoise_mask: torch.Tensor | None = None,
               callback: ProgressCallback | None = None, disable_pbar: bool = False,
               seed: int | None = None) -> torch.Tensor: ...
