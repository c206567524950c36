"""ComfyUI's `comfy.ldm.modules.diffusionmodules.util` for packs: `timestep_embedding` (the sinusoidal embedding
Loom's UNet uses, `engine.networks.unet`), `make_beta_schedule` (`engine.sampling.model_sampling`) and
`zero_module`."""
from __future__ import annotations

import torch

from engine.networks.unet import timestep_embedding as _loom_timestep_embedding
from engine.sampling.model_sampling import make_beta_schedule

__all__ = ["timestep_embedding", "make_beta_schedule", "zero_module"]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0,
                       repeat_only: bool = False) -> torch.Tensor:
    """Sinusoidal embeddings [N, dim] of the N (possibly fractional) timesteps; ``repeat_only``: each timestep
    repeated ``dim`` times instead."""
    if repeat_only:
        return timesteps[:, None].expand(-1, dim)
    return _loom_timestep_embedding(timesteps, dim, max_period)


def zero_module(module: torch.nn.Module) -> torch.nn.Module:
    """Zero the module's parameters in place; returns it."""
    for p in module.parameters():
        p.detach().zero_()
    return module
