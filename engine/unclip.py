"""SD2.1 unCLIP: the ADM vector from CLIP vision image embeddings, and the image tower a checkpoint embeds.

An unCLIP UNet (family ``sd21_unclip``) takes ``y`` = [noise-augmented image embedding, sinusoidal embedding of the
noise level]: adm = embedding width + noise-level width, so the augmentor's width is adm / 2. The augmentor is
ComfyUI's ``CLIPEmbeddingNoiseAugmentation``: a 1000-step ``squaredcos_cap_v2`` DDPM schedule (computed from that
config, like ComfyUI, which does not read the file's ``noise_augmentor.*`` buffers), data mean 0 / std 1 (not
stored), ``q_sample`` at level ``round(999 * noise_augmentation)`` with noise from a generator seeded with the
sampler's seed - 10. Each ``unclip_conditioning`` entry gives one vector per image (times its strength); several
are summed and augmented once more at ``unclip_noise_augment_merge`` (0.05) with the same generator's next draw.
An entry without unCLIP conditioning (the negative prompt) gets zeros.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from engine.adapters.clip_vision import ClipVisionConfig, ClipVisionModel, clip_vision_from_state_dict
from engine.detect import metadata_configs
from engine.errors import CheckpointError
from engine.model_management import ModelManager, file_cache_key
from engine.networks.unet import timestep_embedding
from engine.state_files import read_state_dict

__all__ = ["NoiseAugmentor", "noise_augmentor", "unclip_adm", "load_embedded_clip_vision",
           "CLIP_VISION_PREFIX", "MAX_NOISE_LEVEL", "NOISE_AUGMENT_MERGE"]

CLIP_VISION_PREFIX = "embedder.model."  # + visual.* (OpenCLIP names)
MAX_NOISE_LEVEL = 1000
NOISE_AUGMENT_MERGE = 0.05
_TIMESTEPS = 1000


def squaredcos_cap_v2_betas(steps: int = _TIMESTEPS, max_beta: float = 0.999) -> torch.Tensor:
    """Betas (float64) that discretise alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2 (improved DDPM)."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)],
                        dtype=torch.float64)


class NoiseAugmentor:
    """``q_sample`` of an image embedding at an integer noise level, plus the level's embedding."""

    def __init__(self, timestep_dim: int, steps: int = _TIMESTEPS, max_noise_level: int = MAX_NOISE_LEVEL) -> None:
        self.timestep_dim = timestep_dim
        self.max_noise_level = max_noise_level
        self.betas = squaredcos_cap_v2_betas(steps)
        alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.alphas_cumprod = alphas_cumprod.float()
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt().float()

    def level(self, noise_augmentation: float) -> int:
        """The schedule index of a 0..1 ``noise_augmentation`` (ComfyUI rounds (max - 1) x value)."""
        return round((self.max_noise_level - 1) * noise_augmentation)

    def __call__(self, x: torch.Tensor, level: int, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(noised x [1, D], noise-level embedding [1, D]) for x [1, D] and standard-normal ``noise`` [1, D]."""
        z = self.sqrt_alphas_cumprod[level] * x + self.sqrt_one_minus_alphas_cumprod[level] * noise
        return z, timestep_embedding(torch.tensor([level]), self.timestep_dim)


@lru_cache(maxsize=8)
def noise_augmentor(adm_channels: int) -> NoiseAugmentor:
    """The augmentor of an unCLIP UNet whose ADM input is ``adm_channels`` wide (embedding width = adm / 2)."""
    if adm_channels % 2:
        raise ValueError(f"unCLIP ADM width {adm_channels} is odd: it must be image embedding + noise-level width")
    return NoiseAugmentor(adm_channels // 2)


def _entry_value(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: unclip_conditioning entry without '{key}' (make it with unCLIPConditioning)")
    return entry[key]


def unclip_adm(entries: Sequence[Mapping[str, Any]] | None, adm_channels: int, seed: int | None,
               merge_augmentation: float = NOISE_AUGMENT_MERGE) -> torch.Tensor:
    """The unCLIP UNet's ``y`` [1, adm] for one conditioning entry's ``unclip_conditioning`` list (zeros without)."""
    if not entries:
        return torch.zeros((1, adm_channels))
    aug = noise_augmentor(adm_channels)
    width = aug.timestep_dim
    base_seed = (0 if seed is None else int(seed)) - 10
    gen = torch.Generator(device="cpu")
    vectors: list[torch.Tensor] = []
    for i, entry in enumerate(entries):
        where = f"unclip_conditioning[{i}]"
        embeds = _entry_value(entry, "clip_vision_output", where)["image_embeds"]
        strength = float(_entry_value(entry, "strength", where))
        level = aug.level(float(_entry_value(entry, "noise_augmentation", where)))
        if embeds.shape[-1] != width:
            raise ValueError(f"{where}: CLIP vision image embeds are {embeds.shape[-1]} wide, but this unCLIP model "
                             f"takes {width} (ADM {adm_channels} = embedding + noise level): use the CLIP vision "
                             "model of the unCLIP checkpoint (unCLIPCheckpointLoader)")
        for row in embeds.float().cpu():
            gen.manual_seed(base_seed)
            noise = torch.randn((1, width), generator=gen)
            z, level_emb = aug(row[None], level, noise)
            vectors.append(torch.cat([z, level_emb], dim=1) * strength)
    if len(vectors) == 1:
        return vectors[0]
    summed = torch.stack(vectors).sum(0)
    noise = torch.randn((1, width), generator=gen)  # the generator's next draw, as ComfyUI's global one
    z, level_emb = aug(summed[:, :width], aug.level(merge_augmentation), noise)
    return torch.cat([z, level_emb], dim=1)


def _embedded_config(metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata for the embedded tower: a ``clip_vision`` config inside a ``*_config`` JSON, as
    ``comfy_clip_vision_config`` (what engine.adapters.clip_vision reads); else none (layer-count rule)."""
    fields = set(ClipVisionConfig.__dataclass_fields__)
    for parsed in metadata_configs(metadata):
        cfg = parsed.get("clip_vision")
        if isinstance(cfg, dict):
            return {"clip_vision_config": json.dumps({"comfy_clip_vision_config":
                                                      {k: v for k, v in cfg.items() if k in fields}})}
    return {}


def load_embedded_clip_vision(path: str | os.PathLike[str], manager: ModelManager) -> ClipVisionModel:
    """The CLIP vision tower an unCLIP checkpoint embeds (``embedder.model.visual.*``), loaded once per file."""
    p = Path(path)

    def build() -> ClipVisionModel:
        sd, metadata = read_state_dict(p)
        tower = {k[len(CLIP_VISION_PREFIX):]: v for k, v in sd.items() if k.startswith(CLIP_VISION_PREFIX + "visual.")}
        if not tower:
            raise CheckpointError(f"{p.name}: no embedded CLIP vision model ({CLIP_VISION_PREFIX}visual.* keys): "
                                  "not an unCLIP checkpoint; load it with CheckpointLoaderSimple and a CLIP vision "
                                  "model with CLIPVisionLoader")
        return clip_vision_from_state_dict(tower, _embedded_config(metadata), f"{p.name} (clip vision)", manager)

    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}. Put it in models/checkpoints and refresh")
    return manager.cached(file_cache_key("unclip_clip_vision", p), build)
