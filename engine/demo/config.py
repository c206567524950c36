"""Configuration of the demo model and of the command that trains it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from engine.networks.text_encoders import ClipTextConfig
from engine.networks.unet import UNetConfig
from engine.networks.vae import VAEConfig

SD15_SCALE_FACTOR = 0.18215
"""SD1.x latent scale; the demo VAE is folded so that latents behave the same under it."""


def unet_config() -> UNetConfig:
    """SD1.5 block layout (4 levels, 2 res blocks, attention at levels 0-2, 8 heads), narrow widths."""
    return UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=(2, 2, 2, 2),
                      transformer_depth=(1, 1, 1, 1, 1, 1, 0, 0),
                      transformer_depth_output=(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0),
                      transformer_depth_middle=1, context_dim=96, num_heads=8)


def text_config() -> ClipTextConfig:
    """CLIP-L layout and vocabulary; 12 heads like CLIP-L so a loader's family default fits too."""
    return ClipTextConfig(hidden_size=96, intermediate_size=384, num_hidden_layers=3,
                          num_attention_heads=12, projection_dim=96)


def vae_config() -> VAEConfig:
    """SD VAE layout (x8, z 4), narrow widths."""
    return VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, z_channels=4, embed_dim=4)


_O = TypeVar("_O", bound="_Options")


class _Options:
    """`name=value` command-line options over a frozen dataclass of knobs, and their JSON form."""

    def to_json(self) -> str:
        """The config as JSON (for the log and the checkpoint metadata)."""
        return json.dumps(asdict(self), sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_overrides(cls: type[_O], overrides: dict[str, str]) -> _O:
        """Build a config from `name=value` strings, converting each to the field's type."""
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for name, raw in overrides.items():
            if name not in known:
                raise ValueError(f"unknown training option {name!r}; known: {', '.join(sorted(known))}")
            kind = type(getattr(cls(), name))
            values[name] = kind(raw)
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig(_Options):
    """Every knob of `python -m engine.demo.train`; saved into the checkpoint's metadata.

    Phase 1 trains the VAE (first on crops, then on whole images); phase 2 trains UNet + text encoder
    on latents of the frozen VAE, with empty captions for CFG, min-SNR weighting and an EMA.
    """

    image_size: int = 128
    seed: int = 1234
    threads: int = 1
    device: str = "auto"
    draw_workers: int = 1
    max_minutes: float = 0.0
    final_report: str = "3,5,7.5"
    # phase 1: VAE (random crops of a pool of drawn images, then whole images)
    vae_crop_steps: int = 3000
    vae_crop_size: int = 64
    vae_crop_batch: int = 32
    vae_full_steps: int = 400
    vae_full_batch: int = 32
    vae_lr: float = 8e-4
    vae_kl_weight: float = 1e-6
    vae_pool: int = 8192
    vae_from: str = ""
    # phase 2: UNet + text encoder (images of unet_image_size; the VAE is size-agnostic)
    unet_image_size: int = 128
    unet_steps: int = 4800
    unet_batch: int = 128
    unet_lr: float = 8e-4
    text_lr: float = 6e-4
    warmup_steps: int = 200
    empty_caption_prob: float = 0.1
    min_snr_gamma: float = 5.0
    noise_offset: float = 0.25
    ema_decay: float = 0.999
    high_noise_fraction: float = 0.25
    high_noise_from: int = 800
    latent_pool: int = 32768
    pool_refresh_every: int = 0
    pool_refresh_count: int = 64
    # bookkeeping
    checkpoint_every: int = 500
    eval_every: int = 1000
    eval_steps: int = 16
    eval_cfg: float = 6.0


@dataclass(frozen=True)
class InpaintTrainConfig(_Options):
    """Every knob of `python -m engine.demo.train_inpaint` (the 9-channel fine-tune of the demo UNet).

    The UNet starts from the demo's, its input conv widened to 9 channels (the 5 new ones zero); text
    encoder and VAE stay frozen. Examples: a scene with the captioned shape inside a rectangular mask (a
    `free_mask_prob` share of masks chosen first, the shape drawn inside; of the others some cover part of a
    shape), sometimes a second shape outside the mask; the model sees the noisy
    latent, the mask and the latent of the image with the masked area set to 0.5 grey (InpaintModelConditioning).
    """

    image_size: int = 128
    seed: int = 4321
    threads: int = 1
    device: str = "auto"
    max_minutes: float = 0.0
    steps: int = 5000
    batch: int = 16
    lr: float = 4e-4
    input_conv_lr_scale: float = 20.0
    warmup_steps: int = 20
    pool: int = 4096
    empty_caption_prob: float = 0.1
    short_caption_prob: float = 0.5
    free_mask_prob: float = 0.4
    partial_mask_prob: float = 0.25
    distractor_prob: float = 0.5
    min_snr_gamma: float = 5.0
    noise_offset: float = 0.25
    high_noise_fraction: float = 0.5
    high_noise_from: int = 600
    ema_decay: float = 0.995
    checkpoint_every: int = 10
    export_every: int = 50


@dataclass(frozen=True)
class ModelSpec:
    """The demo networks' hyper-parameters, as stored in the checkpoint metadata."""

    unet: UNetConfig = field(default_factory=unet_config)
    clip: ClipTextConfig = field(default_factory=text_config)
    vae: VAEConfig = field(default_factory=vae_config)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, in the same shape as the tiny fixture's config."""
        return {
            "unet": asdict(self.unet),
            "clip": asdict(self.clip),
            "vae": {**asdict(self.vae), "scaling_factor": SD15_SCALE_FACTOR},
            "parameterization": "eps",
            "schedule": {"beta_schedule": "scaled_linear (LDM 'linear')", "linear_start": 0.00085,
                         "linear_end": 0.012, "num_timesteps": 1000},
        }
