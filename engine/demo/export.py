"""Write the demo networks as one SD1.5-layout single-file checkpoint (and fold the latent scale)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
CONFIG_METADATA_KEY = "loom_demo_config"
"""Metadata key of the model config (same JSON shape as the tiny fixture's `tiny_sd15_config`)."""


def ddpm_buffers(linear_start: float = 0.00085, linear_end: float = 0.012,
                 timesteps: int = 1000) -> dict[str, torch.Tensor]:
    """The LDM DDPM schedule buffers an SD1.5 file carries (computed in float64, stored float32)."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, dim=0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    buffers = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {k: v.float() for k, v in buffers.items()}


@torch.no_grad()
def fold_latent_scale(vae: AutoencoderKL, mean: torch.Tensor, std: float, target_std: float) -> float:
    """Make the encoder's posterior mean centred with std `target_std`; the decoder undoes it exactly.

    new = k * (old - mean) with k = target_std / std, folded into quant_conv (mean and log-variance
    halves) and post_quant_conv. Returns k.
    """
    k = target_std / std
    e = vae.config.embed_dim
    qc, pqc = vae.quant_conv, vae.post_quant_conv
    qc.weight[:e] *= k
    qc.bias[:e] = (qc.bias[:e] - mean) * k
    qc.bias[e:] += 2.0 * float(torch.log(torch.tensor(k)))
    w = pqc.weight.clone()
    pqc.bias += (w[:, :, 0, 0] @ mean.to(w))
    pqc.weight /= k
    return k


def checkpoint_state(unet: nn.Module, text: ClipTextEncoder, vae: nn.Module,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """All tensors under SD1.5's single-file key names."""
    state: dict[str, torch.Tensor] = {}
    for prefix, module in ((UNET_PREFIX, unet), (VAE_PREFIX, vae), (CLIP_PREFIX, text.transformer)):
        for key, value in module.state_dict().items():
            if key.endswith("position_ids"):
                continue
            state[prefix + key] = value.detach().to("cpu", dtype).contiguous()
    positions = text.config.max_position_embeddings
    state[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    state.update(ddpm_buffers())
    return state


def save_checkpoint(path: Path, unet: UNetModel, text: ClipTextEncoder, vae: AutoencoderKL,
                    model_config: dict[str, object], train_config_json: str,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write the single-file checkpoint with the model and training configs in its metadata."""
    metadata = {
        "format": "pt",
        CONFIG_METADATA_KEY: json.dumps(model_config, sort_keys=True),
        "tiny_sd15_config": json.dumps(model_config, sort_keys=True),
        "loom_demo_training": train_config_json,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(checkpoint_state(unet, text, vae, dtype), str(tmp), metadata=metadata)
    tmp.replace(path)
