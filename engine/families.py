"""Model families as small descriptions: UNet shape facts, text encoders, latent format, prediction, prefixes.

Detection (engine.detect) reads a checkpoint's UNet shapes to pick a family (ADM input -> SDXL/refiner,
linear proj_in -> SD2.x, conv proj_in -> SD1.x); the loader then uses the family's prefixes and defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.latent_formats import SD15 as SD15_LATENT
from engine.latent_formats import SDXL as SDXL_LATENT
from engine.latent_formats import LatentFormat

__all__ = ["Family", "FAMILIES", "SD15", "SD20", "SDXL", "SDXL_REFINER", "family_names"]

Prediction = Literal["eps", "v"]


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text tower of a family: its kind, checkpoint prefix, padding token and standard heads."""

    kind: Literal["clip_l", "open_clip_h", "open_clip_g"]
    prefix: str
    pad_token: int
    default_heads: int
    layer: Literal["last", "penultimate"] = "last"


@dataclass(frozen=True)
class Family:
    """A model family: latent format, default prediction, text towers, prefixes and head defaults."""

    name: str
    latent_format: LatentFormat
    prediction: Prediction
    text_encoders: tuple[TextEncoderSpec, ...]
    unet_prefix: str = "model.diffusion_model."
    vae_prefix: str = "first_stage_model."
    default_num_head_channels: int = -1
    default_num_heads: int = 8
    supported: bool = True


SD15 = Family(
    name="sd15",
    latent_format=SD15_LATENT,
    prediction="eps",
    text_encoders=(TextEncoderSpec("clip_l", "cond_stage_model.transformer.", 49407, 12),),
    default_num_heads=8,
)

SD20 = Family(
    name="sd20",
    latent_format=SD15_LATENT,
    prediction="eps",  # v for 768-v files: decided by the norm1.bias std rule in engine.detect
    text_encoders=(TextEncoderSpec("open_clip_h", "cond_stage_model.model.", 0, 16, "penultimate"),),
    default_num_head_channels=64,
    supported=False,
)

SDXL = Family(
    name="sdxl",
    latent_format=SDXL_LATENT,
    prediction="eps",
    text_encoders=(
        TextEncoderSpec("clip_l", "conditioner.embedders.0.transformer.", 49407, 12, "penultimate"),
        TextEncoderSpec("open_clip_g", "conditioner.embedders.1.model.", 0, 20, "penultimate"),
    ),
    default_num_head_channels=64,
    supported=False,
)

SDXL_REFINER = Family(
    name="sdxl_refiner",
    latent_format=SDXL_LATENT,
    prediction="eps",
    text_encoders=(TextEncoderSpec("open_clip_g", "conditioner.embedders.0.model.", 0, 20, "penultimate"),),
    default_num_head_channels=64,
    supported=False,
)

FAMILIES: tuple[Family, ...] = (SDXL, SDXL_REFINER, SD20, SD15)


def family_names() -> list[str]:
    """Names of the families Loom can build today (for error messages)."""
    return [f.name for f in FAMILIES if f.supported]
