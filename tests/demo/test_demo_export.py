"""The demo checkpoint writer: SD1.5 key layout, DDPM buffers, folded latent scale."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from engine.demo.config import SD15_SCALE_FACTOR, ModelSpec
from engine.demo.export import (
    CONFIG_METADATA_KEY,
    checkpoint_state,
    ddpm_buffers,
    fold_latent_scale,
    save_checkpoint,
)
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


def _key_pattern(keys: set[str]) -> set[str]:
    """Key names with widths-dependent parts removed (text layer count, 1x1 shortcuts)."""
    out = set()
    for key in keys:
        if "nin_shortcut" in key or "skip_connection" in key:
            continue
        out.add(re.sub(r"encoder\.layers\.\d+\.", "encoder.layers.N.", key))
    return out


@pytest.fixture(scope="module")
def nets() -> tuple[UNetModel, ClipTextEncoder, AutoencoderKL]:
    torch.manual_seed(0)
    spec = ModelSpec()
    return UNetModel(spec.unet), ClipTextEncoder(spec.clip), AutoencoderKL(spec.vae)


def test_keys_are_exactly_sd15_single_file_layout(nets: tuple[UNetModel, ClipTextEncoder, AutoencoderKL]) -> None:
    state = checkpoint_state(*nets)
    with safe_open(str(TINY), "pt") as f:
        reference = set(f.keys())
    unet = {k for k in state if k.startswith("model.diffusion_model.") and "skip_connection" not in k}
    assert unet == {k for k in reference if k.startswith("model.diffusion_model.") and "skip_connection" not in k}
    assert _key_pattern(set(state)) == _key_pattern(reference)
    assert state["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64
    assert state["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"].shape[0] == 49408


def test_ddpm_buffers_match_the_sd_schedule() -> None:
    buffers = ddpm_buffers()
    with safe_open(str(TINY), "pt") as f:
        for key, value in buffers.items():
            torch.testing.assert_close(value, f.get_tensor(key), rtol=1e-6, atol=1e-8)
    sigma = ((1 - buffers["alphas_cumprod"]) / buffers["alphas_cumprod"]).sqrt()
    assert abs(float(sigma[-1]) - 14.6146) < 1e-3


@torch.no_grad()
def test_fold_rescales_latents_and_keeps_decoding() -> None:
    torch.manual_seed(1)
    vae = AutoencoderKL(ModelSpec().vae)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    before_latent = vae.encode(x)
    before_pixels = vae.decode(before_latent)
    mean = before_latent.mean(dim=(0, 2, 3))
    std = float((before_latent - mean[None, :, None, None]).std())
    fold_latent_scale(vae, mean, std, 1.0 / SD15_SCALE_FACTOR)
    after_latent = vae.encode(x)
    assert abs(float((after_latent * SD15_SCALE_FACTOR).std()) - 1.0) < 1e-3
    assert abs(float(after_latent.mean())) < 1e-3
    torch.testing.assert_close(vae.decode(after_latent), before_pixels, rtol=1e-4, atol=1e-4)


def test_saved_file_has_metadata(tmp_path: Path, nets: tuple[UNetModel, ClipTextEncoder, AutoencoderKL]) -> None:
    out = tmp_path / "demo.safetensors"
    save_checkpoint(out, *nets, ModelSpec().to_dict(), "{}")
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    assert '"num_attention_heads": 12' in meta[CONFIG_METADATA_KEY]
