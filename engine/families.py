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
    """One text tower of a family.

    key: token-dict key ("l", "g", "h"); kind: network layout; prefix: checkpoint prefix of the tower's
    keys (CLIP-L: up to ``transformer.``; OpenCLIP: up to ``model.``); pad_token: padding id;
    default_heads: standard head count (heads cannot be read from shapes); default_layer: None = last
    layer, -2 = penultimate; norm_hidden: final layer norm on an intermediate layer's output;
    meta_keys: where a file's metadata config describes this tower.
    """

    key: Literal["l", "g", "h"]
    kind: Literal["clip_l", "open_clip"]
    prefix: str
    pad_token: int
    default_heads: int
    default_layer: int | None
    norm_hidden: bool
    meta_keys: tuple[str, ...]


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
    adm: Literal["none", "sdxl", "sdxl_refiner"] = "none"


SD15 = Family(
    name="sd15",
    latent_format=SD15_LATENT,
    prediction="eps",
    text_encoders=(TextEncoderSpec("l", "clip_l", "cond_stage_model.transformer.", 49407, 12, None, True,
                                   ("clip", "text_encoder_l", "text_encoder")),),
    default_num_heads=8,
)

SD20 = Family(
    name="sd20",
    latent_format=SD15_LATENT,
    prediction="eps",  # v for 768-v files: decided by the norm1.bias std rule in engine.detect
    text_encoders=(TextEncoderSpec("h", "open_clip", "cond_stage_model.model.", 0, 16, -2, True,
                                   ("text_encoder", "text_encoder_h")),),
    default_num_head_channels=64,
)

SDXL = Family(
    name="sdxl",
    latent_format=SDXL_LATENT,
    prediction="eps",
    adm="sdxl",
    text_encoders=(
        TextEncoderSpec("l", "clip_l", "conditioner.embedders.0.transformer.", 49407, 12, -2, False,
                        ("text_encoder_l",)),
        TextEncoderSpec("g", "open_clip", "conditioner.embedders.1.model.", 0, 20, -2, False,
                        ("text_encoder_g",)),
    ),
    default_num_head_channels=64,
)

SDXL_REFINER = Family(
    name="sdxl_refiner",
    latent_format=SDXL_LATENT,
    prediction="eps",
    adm="sdxl_refiner",
    text_encoders=(TextEncoderSpec("g", "open_clip", "conditioner.embedders.0.model.", 0, 20, -2, False,
                                   ("text_encoder_g",)),),
    default_num_head_channels=64,
)

FAMILIES: tuple[Family, ...] = (SDXL, SDXL_REFINER, SD20, SD15)


def family_names() -> list[str]:
    """Names of the families Loom can build today (for error messages)."""
    return [f.name for f in FAMILIES]
