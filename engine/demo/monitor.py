"""A small Euler + CFG sampler over the demo's in-memory networks, for scoring during training.

It follows the KSampler rules (normal schedule, eps model fed the nearest integer timestep, start at
sqrt(1 + sigma_max^2) * noise) so what it scores is what users will see through the nodes.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.demo.config import SD15_SCALE_FACTOR
from engine.demo.text import CaptionTokenizer
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL
from engine.sampling.model_sampling import ModelSamplingDiscrete


@torch.no_grad()
def generate(unet: UNetModel, text: ClipTextEncoder, vae: AutoencoderKL, tokenizer: CaptionTokenizer,
             captions: list[str], seeds: list[int], size: int, steps: int = 16,
             cfg: float = 6.0) -> np.ndarray:
    """Images [N, H, W, 3] float 0..1 for each (caption, seed)."""
    dev = next(unet.parameters()).device
    ms = ModelSamplingDiscrete()
    sigmas = torch.cat([ms.sigma(torch.linspace(999, 0, steps)), torch.zeros(1)]).to(dev)
    cond = text(tokenizer(captions).to(dev))[0]
    uncond = text(tokenizer([""]).to(dev))[0].expand_as(cond)
    h = size // vae.config.downscale
    # noise drawn on the CPU like KSampler's, so a GPU run starts from the same latents
    noise = torch.cat([torch.randn(1, 4, h, h, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(dev)
    x = noise * float(torch.sqrt(1.0 + sigmas[0] ** 2))
    context = torch.cat([cond, uncond])
    for i in range(steps):
        sigma = sigmas[i]
        xin = torch.cat([x, x]) / torch.sqrt(sigma**2 + 1.0)
        t = ms.timestep(sigma.cpu()).float().to(dev).expand(xin.shape[0])
        eps = unet(xin, t, context)
        d_cond, d_uncond = (torch.cat([x, x]) - eps * sigma).chunk(2)
        denoised = d_uncond + (d_cond - d_uncond) * cfg
        x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
    pixels = vae.decode(x / SD15_SCALE_FACTOR)
    return ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
