"""ComfyUI's `comfy.ldm.modules.diffusionmodules.util` for packs: the UNet's sinusoidal `timestep_embedding` (Loom's
UNet's own, `engine.networks.unet`) and `make_beta_schedule` (`engine.sampling.model_sampling`)."""
from __future__ import annotations

import torch

from engine.networks.unet import timestep_embedding as _timestep_embedding
from engine.sampling.model_sampling import make_beta_schedule

__all__ = ["timestep_embedding", "make_beta_schedule"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000, repeat_only: bool = False
                       ) -> torch.Tensor:
    """[N, dim] sinusoidal embeddings of N (possibly fractional) timesteps; ``repeat_only``: each timestep
    repeated ``dim`` times instead."""
    if repeat_only:
        return timesteps[:, None].expand(-1, dim)
    return _timestep_embedding(timesteps, dim, max_period)
