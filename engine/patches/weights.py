"""Attention-projection weight scales (ComfyUI's UNetSelfAttentionMultiply, UNetCrossAttentionMultiply,
UNetTemporalAttentionMultiply and CLIPAttentionMultiply): the weight and bias of each chosen projection are
multiplied by a factor, as weight patches on the handle (the shared network is untouched)."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from engine.patching import Patchable

__all__ = ["unet_attention_scales", "clip_attention_scales", "temporal_attention_scales", "apply_weight_scales"]


def _by_suffix(names: Iterable[str], suffixes: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        for suffix, factor in suffixes.items():
            if name.endswith(f"{suffix}.weight") or name.endswith(f"{suffix}.bias"):
                out[name] = factor
    return out


def unet_attention_scales(names: Iterable[str], attn: str, q: float, k: float, v: float,
                          out: float) -> dict[str, float]:
    """Parameter name -> factor for the to_q / to_k / to_v / to_out.0 projections of every ``attn`` ("attn1" or
    "attn2") of a UNet."""
    return _by_suffix(names, {f"{attn}.to_q": q, f"{attn}.to_k": k, f"{attn}.to_v": v, f"{attn}.to_out.0": out})


def clip_attention_scales(names: Iterable[str], q: float, k: float, v: float, out: float) -> dict[str, float]:
    """Parameter name -> factor for the q / k / v / out projections of every text-encoder self-attention."""
    return _by_suffix(names, {"self_attn.q_proj": q, "self_attn.k_proj": k, "self_attn.v_proj": v,
                              "self_attn.out_proj": out})


def temporal_attention_scales(names: Iterable[str], self_structural: float, self_temporal: float,
                              cross_structural: float, cross_temporal: float) -> dict[str, float]:
    """Parameter name -> factor for the attn1 / attn2 output projections, temporal ones (``.time_stack.``)
    apart from the spatial ones."""
    names = list(names)
    out: dict[str, float] = {}
    for attn, spatial, temporal in (("attn1", self_structural, self_temporal),
                                    ("attn2", cross_structural, cross_temporal)):
        for name in _by_suffix(names, {f"{attn}.to_out.0": 1.0}):
            out[name] = temporal if ".time_stack." in name else spatial
    return out


def _no_delta(weight: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(weight)


def apply_weight_scales(handle: Patchable, scales: dict[str, float]) -> None:
    """Record ``weight *= factor`` patches on ``handle`` (factors of exactly 1 change nothing and are skipped)."""
    by_factor: dict[float, list[str]] = {}
    for name, factor in scales.items():
        if factor != 1.0:
            by_factor.setdefault(factor, []).append(name)
    for factor, names in by_factor.items():
        handle.add_patches(dict.fromkeys(names, _no_delta), 0.0, factor)
