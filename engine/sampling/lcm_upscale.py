"""LCM sampling that grows the latent as it goes (ComfyUI's SamplerLCMUpscale).

Latent Consistency Model multistep sampling (Luo et al. 2023, "Latent Consistency Models"): jump to the x0
estimate, resize it (``engine.image_ops.common_upscale``) by the next factor of a linear ramp from 1 to
``total_upscale``, re-noise to the next sigma.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.image_ops import common_upscale
from engine.sampling.k_samplers import Denoiser, StepCallback, batch_ones, denoise_and_report, require_noise
from engine.sampling.noise import NoiseSampler


class _NoiseStream:
    """Unit Gaussian noise of any shape, cut from consecutive draws of a fixed-shape noise sampler.

    ComfyUI draws this sampler's noise with ``randn_like`` from torch's global generator, which its initial
    noise draw seeded and advanced. The KSampler noise sampler is seeded the same way and its first draw is
    that initial noise, so skipping one draw and cutting the rest into pieces reproduces ComfyUI's stream
    (CPU ``randn`` of sizes that are multiples of 16 is position-wise, so pieces concatenate exactly).
    """

    def __init__(self, noise: NoiseSampler) -> None:
        self.noise = noise
        self.buffer: torch.Tensor | None = None

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The next ``prod(shape)`` values of the stream, shaped."""
        need = math.prod(shape)
        if self.buffer is None:
            self.buffer = self.noise(sigma, sigma_next).reshape(-1)[:0]  # skip the initial noise's draw
        parts = [self.buffer]
        have = self.buffer.numel()
        while have < need:
            parts.append(self.noise(sigma, sigma_next).reshape(-1))
            have += parts[-1].numel()
        flat = torch.cat(parts)
        self.buffer = flat[need:]
        return flat[:need].reshape(shape)


@torch.no_grad()
def sample_lcm_upscale(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
    total_upscale: float = 2.0, upscale_method: str = "bislerp", upscale_steps: int | None = None,
) -> torch.Tensor:
    """LCM steps with the x0 estimate resized by ``upscale_method`` after each of the first ``upscale_steps``
    steps (default: half the schedule), reaching ``total_upscale`` times the input size."""
    stream = _NoiseStream(require_noise(noise_sampler, "lcm_upscale"))
    if upscale_steps is None:
        count = max(len(sigmas) // 2 + 1, 2)
    else:
        count = min(upscale_steps + 1, len(sigmas) + 1)
    factors = np.linspace(1.0, total_upscale, count)[1:]
    height, width = x.shape[-2], x.shape[-1]
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        x = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if i < len(factors):
            x = common_upscale(x, round(width * float(factors[i])), round(height * float(factors[i])),
                               upscale_method, "disabled")
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * stream(sigmas[i], sigmas[i + 1], x.shape)
    return x
