"""Model families as small descriptions: UNet shape facts, text encoders, latent format, prediction, prefixes.

Detection (engine.detect) reads a checkpoint's UNet shapes to pick a family (ADM input -> SDXL/refiner,
linear proj_in -> SD2.x, conv proj_in -> SD1.x); the loader then uses the family's prefixes and defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from engine.latent_formats import FLUX as FLUX_LATENT
from engine.latent_formats import SD3 as SD3_LATENT
from engine.latent_formats import SD15 as SD15_LATENT
from engine.latent_formats import SDXL as SDXL_LATENT
from engine.latent_formats import LatentFormat

__all__ = ["Family", "FAMILIES", "SD15", "SD20", "SD21_UNCLIP", "SDXL", "SDXL_REFINER", "FLUX_DEV", "FLUX_SCHNELL",
           "SD35", "base_family", "family_names"]

Prediction = Literal["eps", "v", "flow"]


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text tower of a family.

    key: token-dict key ("l", "g", "h"); kind: network layout; prefix: checkpoint prefix of the tower's
    keys (CLIP-L: up to ``transformer.``; OpenCLIP: up to ``model.``); pad_token: padding id;
    default_heads: standard head count (heads cannot be read from shapes); default_layer: None = last
    layer, -2 = penultimate; norm_hidden: final layer norm on an intermediate layer's output;
    meta_keys: where a file's metadata config describes this tower.
    """

    key: Literal["l", "g", "h", "t5xxl"]
    kind: Literal["clip_l", "open_clip", "t5"]
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
    adm: Literal["none", "sdxl", "sdxl_refiner", "flux", "pooled", "unclip"] = "none"
    arch: Literal["unet", "flux", "mmdit"] = "unet"
    # model sampling: "discrete" (DDPM table), "flow" (ModelSamplingDiscreteFlow shift / multiplier),
    # "flux" (ModelSamplingFlux shift)
    sampling: Literal["discrete", "flow", "flux"] = "discrete"
    shift: float = 1.0
    multiplier: float = 1000.0
    # the family whose text encoder, latent space and UNet encoder this one shares (so conditioning, latents and
    # ControlNets of that family fit it), when it is a variant of another
    base: str | None = None


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

# SD2.1 unCLIP (stabilityai sd21-unclip-h / -l): SD2.x with an ADM ``label_emb`` fed the noise-augmented CLIP
# vision image embedding + the embedded noise level (engine.unclip); v or eps by the SD2 rule, as SD2.x
SD21_UNCLIP = Family(
    name="sd21_unclip",
    latent_format=SD15_LATENT,
    prediction="eps",
    text_encoders=SD20.text_encoders,
    default_num_head_channels=64,
    adm="unclip",
    base="sd20",
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

# Flow-matching families. Their text towers come from text-encoder files or an all-in-one checkpoint's
# ``text_encoders.<name>.transformer.`` keys (HF names); CLIP heads as in SD1 / SDXL (not readable from shapes).
_FLOW_L = TextEncoderSpec("l", "clip_l", "text_encoders.clip_l.transformer.", 49407, 12, None, True,
                          ("clip_l", "text_encoder_l"))
_FLOW_T5 = TextEncoderSpec("t5xxl", "t5", "text_encoders.t5xxl.transformer.", 0, 64, None, True, ("t5xxl",))

FLUX_DEV = Family(
    name="flux1_dev",
    latent_format=FLUX_LATENT,
    prediction="flow",
    text_encoders=(_FLOW_L, _FLOW_T5),
    vae_prefix="vae.",
    adm="flux",
    arch="flux",
    sampling="flux",
    shift=1.15,
)

# schnell: the dev network without a guidance embedding, sampled with a plain flow shift of 1
FLUX_SCHNELL = replace(FLUX_DEV, name="flux1_schnell", sampling="flow", shift=1.0, multiplier=1.0)

SD35 = Family(
    name="sd35",
    latent_format=SD3_LATENT,
    prediction="flow",
    text_encoders=(TextEncoderSpec("l", "clip_l", "text_encoders.clip_l.transformer.", 49407, 12, -2, False,
                                   ("clip_l", "text_encoder_l")),
                   TextEncoderSpec("g", "clip_l", "text_encoders.clip_g.transformer.", 0, 20, -2, False,
                                   ("clip_g", "text_encoder_g")),
                   _FLOW_T5),
    adm="pooled",
    arch="mmdit",
    sampling="flow",
    shift=3.0,
    multiplier=1000.0,
)

FAMILIES: tuple[Family, ...] = (SDXL, SDXL_REFINER, SD21_UNCLIP, SD20, SD15)
FLOW_FAMILIES: tuple[Family, ...] = (FLUX_DEV, FLUX_SCHNELL, SD35)


def base_family(name: str) -> str:
    """The family a family named ``name`` is a variant of (itself when it is none's): what validation compares."""
    for family in FAMILIES + FLOW_FAMILIES:
        if family.name == name:
            return family.base or family.name
    return name


def family_names() -> list[str]:
    """Names of the families Loom can build today (for error messages)."""
    return [f.name for f in FAMILIES + (FLUX_DEV, FLUX_SCHNELL)]
