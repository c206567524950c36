"""The project's loader takes a demo-layout checkpoint and runs it exactly like the training modules."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.demo.config import ModelSpec
from engine.demo.export import save_checkpoint
from engine.demo.text import CaptionTokenizer
from engine.device import DevicePolicy
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.unet import UNetModel
from engine.networks.vae import AutoencoderKL


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, UNetModel, ClipTextEncoder, AutoencoderKL]:
    torch.manual_seed(3)
    spec = ModelSpec()
    unet, text, vae = UNetModel(spec.unet), ClipTextEncoder(spec.clip), AutoencoderKL(spec.vae)
    # random weights, but not the init values: make every tensor matter
    with torch.no_grad():
        for p in list(unet.parameters()) + list(vae.parameters()):
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("demo") / "demo.safetensors"
    save_checkpoint(path, unet, text, vae, spec.to_dict(), "{}")
    return path, unet.eval(), text.eval(), vae.eval()


@torch.no_grad()
def test_loader_detects_sd15_and_matches_forward(saved: tuple[Path, UNetModel, ClipTextEncoder, AutoencoderKL]) -> None:
    path, unet, text, vae = saved
    manager = ModelManager(DevicePolicy.cpu())
    model, clip, vae_handle = load_checkpoint(path, manager)
    assert model.family.name.lower().startswith("sd1")
    assert clip is not None and vae_handle is not None
    assert model.context_dim == 96 and model.in_channels == 4

    tokens = CaptionTokenizer()(["a yellow square on a blue background"])
    expected = text(tokens)[0]
    cond = clip.encode_from_tokens(clip.tokenize("a yellow square on a blue background"))
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)

    x = torch.randn(1, 4, 8, 8)
    t = torch.tensor([500.0])
    torch.testing.assert_close(model.diffusion_model(x, t, expected), unet(x, t, expected), rtol=1e-5, atol=1e-5)

    pixels = torch.rand(1, 64, 64, 3)
    latent = vae_handle.encode(pixels)
    torch.testing.assert_close(latent, vae.encode(pixels.permute(0, 3, 1, 2) * 2 - 1), rtol=1e-5, atol=1e-5)
    decoded = vae_handle.decode(latent)
    reference = ((vae.decode(latent) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(decoded, reference, rtol=1e-5, atol=1e-5)
