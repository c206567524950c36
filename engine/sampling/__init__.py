"""Sampling: noise schedules, k-diffusion-style samplers, CFG guidance and the KSampler entry point.

    prepare_noise(latent, seed, batch_index=None) -> Tensor
    calculate_sigmas(model_sampling, scheduler, steps) -> Tensor
    sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, ...) -> Tensor
    SAMPLER_NAMES, SCHEDULER_NAMES   # only implemented names, in ComfyUI's option order
"""

from __future__ import annotations

from engine.sampling.ksampler import sample
from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.noise import BrownianTreeNoiseSampler, gaussian_noise_sampler, prepare_noise
from engine.sampling.samplers import SAMPLER_NAMES, get_sampler
from engine.sampling.schedulers import SCHEDULER_NAMES, calculate_sigmas

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULER_NAMES",
    "BrownianTreeNoiseSampler",
    "ModelSamplingDiscrete",
    "calculate_sigmas",
    "gaussian_noise_sampler",
    "get_sampler",
    "prepare_noise",
    "sample",
]
