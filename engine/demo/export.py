"""Write the demo networks as one SD1.5-layout single-file checkpoint (and fold the latent scale)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from engine.demo.config import ModelSpec, unet_config
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
INPUT_CONV = "input_blocks.0.0.weight"
"""The UNet's first conv (its input channels: 4 latent, or 9 for inpainting)."""
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


def load_demo_networks(path: Path, unet_in_channels: int = 4) -> tuple[UNetModel, ClipTextEncoder, AutoencoderKL, ModelSpec]:
    """The demo checkpoint's UNet, text encoder and VAE as trainable modules (float32, CPU).

    With `unet_in_channels` > 4 the UNet's input conv is widened: the first 4 input channels keep the
    file's weights, the new ones start at zero (so the widened UNet computes exactly what the file's does).
    """
    from safetensors.torch import load_file

    state = load_file(str(path))
    spec = ModelSpec(unet=replace(unet_config(), in_channels=unet_in_channels))
    unet, text, vae = UNetModel(spec.unet), ClipTextEncoder(spec.clip), AutoencoderKL(spec.vae)
    unet_sd = {k[len(UNET_PREFIX):]: v.float() for k, v in state.items() if k.startswith(UNET_PREFIX)}
    first = unet_sd[INPUT_CONV]
    if unet_in_channels != first.shape[1]:
        widened = torch.zeros(first.shape[0], unet_in_channels, *first.shape[2:])
        widened[:, : first.shape[1]] = first
        unet_sd[INPUT_CONV] = widened
    unet.load_state_dict(unet_sd)
    vae.load_state_dict({k[len(VAE_PREFIX):]: v.float() for k, v in state.items() if k.startswith(VAE_PREFIX)})
    text_sd = {k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    missing, unexpected = text.transformer.load_state_dict(text_sd, strict=False)
    if [k for k in missing if not k.endswith("position_ids")] or [k for k in unexpected if not k.endswith("position_ids")]:
        raise ValueError(f"{path}: text encoder keys do not fit the demo's (missing {missing}, unexpected {unexpected})")
    return unet, text, vae, spec


def save_inpaint_unet(path: Path, unet: UNetModel, spec: ModelSpec, train_config_json: str, step: int) -> None:
    """Write the inpainting UNet alone (SD1.5 key names, float16) with its configs in the metadata."""
    state = {UNET_PREFIX + k: v.detach().to("cpu", torch.float16).contiguous() for k, v in unet.state_dict().items()}
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(spec.to_dict(), sort_keys=True),
                "loom_demo_inpaint_training": train_config_json, "loom_demo_inpaint_step": str(step)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)


def save_zero_init_inpaint_unet(demo: Path, path: Path) -> Path:
    """The inpainting fine-tune's starting point: the demo UNet widened to 9 input channels, the new ones zero
    (it computes exactly the demo model); the baseline the fine-tune is scored against."""
    unet, _, _, spec = load_demo_networks(demo, unet_in_channels=9)
    save_inpaint_unet(path, unet, spec, "{}", 0)
    return path


def compose_inpaint_checkpoint(demo: Path, unet_file: Path, out: Path) -> Path:
    """The full 9-channel SD1.5-layout checkpoint: the demo file's text encoder, VAE and schedule with the
    inpainting UNet (float32); metadata from the demo file with the UNet's model config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(demo), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    with safe_open(str(unet_file), framework="pt") as f:
        unet_meta = dict(f.metadata() or {})
    unet_state = load_file(str(unet_file))
    if unet_state.get(UNET_PREFIX + INPUT_CONV) is None or unet_state[UNET_PREFIX + INPUT_CONV].shape[1] != 9:
        raise ValueError(f"{unet_file}: not a 9-channel inpainting UNet (no {UNET_PREFIX + INPUT_CONV} "
                         "with 9 input channels)")
    state = {k: v for k, v in load_file(str(demo)).items() if not k.startswith(UNET_PREFIX)}
    state.update({k: v.float() for k, v in unet_state.items()})
    for key in (CONFIG_METADATA_KEY, "tiny_sd15_config"):
        metadata[key] = unet_meta[CONFIG_METADATA_KEY]
    metadata.update({k: v for k, v in unet_meta.items() if k.startswith("loom_demo_inpaint")})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(out)
    return out
