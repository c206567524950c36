"""SDXL "ADM" vectors (the UNet's ``y`` input): pooled text embedding + embedded size / crop conditioning.

SDXL base: pooled bigG, then 256-wide sinusoidal embeddings (cos half first) of height, width, crop_h,
crop_w, target_height, target_width. Refiner: height, width, crop_h, crop_w, aesthetic score (6.0 for
positive prompts, 2.5 for negative ones by default). Without explicit values (plain CLIPTextEncode) the
size is the latent size x 8, crop 0 and target = size.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from engine.networks.unet import timestep_embedding

__all__ = ["size_embedding", "adm_vector", "flux_vector", "FLUX_DEFAULT_GUIDANCE"]

PromptType = Literal["positive", "negative"]


def size_embedding(values: Sequence[float], dim: int = 256) -> torch.Tensor:
    """Concatenated sinusoidal embeddings of each value, [len(values) * dim]."""
    return timestep_embedding(torch.tensor([float(v) for v in values]), dim).flatten()


FLUX_DEFAULT_GUIDANCE = 3.5


def flux_vector(cond: Mapping[str, Any]) -> torch.Tensor:
    """Flux's ``y``: the CLIP-L pooled vector and one column of distilled guidance (default 3.5; NaN when
    FluxDisableGuidance set it to None, so the network skips the guidance embedding)."""
    pooled = cond.get("pooled_output")
    if pooled is None:
        raise ValueError("flux needs a pooled text embedding: the conditioning has no 'pooled_output' "
                         "(encode the prompt with a flux DualCLIPLoader CLIP)")
    guidance = cond.get("guidance", FLUX_DEFAULT_GUIDANCE)
    value = float("nan") if guidance is None else float(guidance)
    column = torch.full((pooled.shape[0], 1), value, dtype=torch.float32)
    return torch.cat([pooled.float(), column], dim=1)


def adm_vector(kind: str, cond: Mapping[str, Any], latent_shape: Sequence[int],
               prompt_type: PromptType = "positive", downscale: int = 8) -> torch.Tensor | None:
    """The ``y`` vector [B, adm] of one conditioning entry for an ADM family ("sdxl" / "sdxl_refiner")."""
    if kind == "none":
        return None
    pooled = cond.get("pooled_output")
    if kind == "flux":
        return flux_vector(cond)
    if kind == "pooled":  # SD3: the joined CLIP-L + CLIP-G pooled vector as it is
        if pooled is None:
            raise ValueError("sd3 needs a pooled text embedding: the conditioning has no 'pooled_output'")
        out: torch.Tensor = pooled.float()
        return out
    if pooled is None:
        raise ValueError(f"{kind} needs a pooled text embedding: the conditioning has no 'pooled_output' "
                         "(encode the prompt with this model's CLIP)")
    height = cond.get("height", int(latent_shape[-2]) * downscale)
    width = cond.get("width", int(latent_shape[-1]) * downscale)
    crop_h, crop_w = cond.get("crop_h", 0), cond.get("crop_w", 0)
    if kind == "sdxl":
        values = [height, width, crop_h, crop_w, cond.get("target_height", height),
                  cond.get("target_width", width)]
    elif kind == "sdxl_refiner":
        default_score = 2.5 if prompt_type == "negative" else 6.0
        values = [height, width, crop_h, crop_w, cond.get("aesthetic_score", default_score)]
    else:
        raise ValueError(f"unknown ADM kind {kind!r}; expected 'none', 'sdxl' or 'sdxl_refiner'")
    flat = size_embedding(values).to(pooled)[None].repeat(pooled.shape[0], 1)
    return torch.cat([pooled.float(), flat.float()], dim=1)
