"""ComfyUI's `comfy.sample` for packs: noise and the KSampler entry point, over `engine.sampling`."""
from __future__ import annotations

from typing import Any

import numpy as np  # noqa: F401  (ComfyUI's comfy.sample imports numpy; packs import `np` from it)
import torch

from app.compat._environment import handles_for

_loom = handles_for(__name__)  # this Loom instance's objects


def prepare_noise(latent_image: torch.Tensor, seed: int, noise_inds: Any = None) -> torch.Tensor:
    """ComfyUI's initial noise (CPU generator, float32) for a latent batch."""
    from engine.sampling.noise import prepare_noise as engine_prepare_noise

    return engine_prepare_noise(latent_image, seed, noise_inds)


def fix_empty_latent_channels(model: Any, latent_image: torch.Tensor) -> torch.Tensor:
    """An all-zero latent with the wrong channel count is widened to the model's latent channels."""
    channels = getattr(getattr(model, "latent_format", None), "latent_channels", None)
    if channels and latent_image.shape[1] != channels and torch.count_nonzero(latent_image) == 0:
        shape = (latent_image.shape[0], channels, *latent_image.shape[2:])
        return torch.zeros(shape, dtype=latent_image.dtype, device=latent_image.device)
    return latent_image


def sample(model: Any, noise: torch.Tensor, steps: int, cfg: float, sampler_name: str, scheduler: str,
           positive: Any, negative: Any, latent_image: torch.Tensor, denoise: float = 1.0,
           disable_noise: bool = False, start_step: int | None = None, last_step: int | None = None,
           force_full_denoise: bool = False, noise_mask: Any = None, sigmas: Any = None, callback: Any = None,
           disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
    """Run Loom's sampler; `callback(step, x0, x, total_steps)` as in ComfyUI; `sigmas`, when given, is the
    schedule run instead of the scheduler's."""
    from engine import sampling
    from nodes._base import engine_reports

    with engine_reports():  # a pack's sampler node reports its controls to history like the built-in ones
        return sampling.sample(
            model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise,
            disable_noise=disable_noise, start_step=start_step, last_step=last_step,
            force_full_denoise=force_full_denoise, noise_mask=noise_mask, callback=callback, seed=seed,
            sigmas=sigmas,
        )


def sample_custom(model: Any, noise: torch.Tensor, cfg: float, sampler: Any, sigmas: torch.Tensor, positive: Any,
                  negative: Any, latent_image: torch.Tensor, noise_mask: Any = None, callback: Any = None,
                  disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
    """Sample over `sigmas` exactly as given with a SAMPLER value (SamplerCustom's body; Impact Pack's samplers)."""
    from engine.sampling.custom import sample_custom as engine_sample_custom
    from nodes._base import engine_reports

    with engine_reports():
        return engine_sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image,
                                    noise_mask=noise_mask, callback=callback, seed=seed)
