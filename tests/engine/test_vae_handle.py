"""VaeHandle: golden decode, encode rules (crop, x*2-1, posterior mean), tiled fallbacks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.device import DevicePolicy
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.vae_handle import VaeHandle, tiled_apply


@pytest.fixture(scope="module")
def vae(fixtures_dir: Path) -> VaeHandle:
    _, _, v = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()),
                              output_clip=False)
    assert v is not None
    return v


def test_golden_images_from_latents(vae: VaeHandle, fixtures_dir: Path) -> None:
    stems = sorted((fixtures_dir / "tiny-sd15").glob("golden*/*.latent.npy"))
    assert len(stems) >= 2
    for lat_path in stems[:2]:
        ref = np.load(str(lat_path).replace(".latent.npy", ".image.npy"))
        img = vae.decode(torch.from_numpy(np.load(lat_path)))
        assert img.shape == ref.shape and img.dtype == torch.float32
        assert np.abs(img.numpy() - ref).max() / np.abs(ref).max() <= 1e-4, lat_path.name


def test_encode_is_posterior_mean_of_scaled_pixels(vae: VaeHandle) -> None:
    torch.manual_seed(0)
    pixels = torch.rand(1, 35, 42, 3)
    lat = vae.encode(pixels)
    assert lat.shape == (1, 4, 4, 5)
    cropped = pixels[:, 1:33, 1:41, :]  # centre crop: offsets remainder // 2
    with torch.no_grad():
        moments = vae.vae.quant_conv(vae.vae.encoder(cropped.movedim(-1, 1) * 2 - 1))
    assert torch.allclose(lat, moments[:, :4], atol=1e-6)


def test_encode_drops_alpha_and_roundtrips_shape(vae: VaeHandle) -> None:
    pixels = torch.rand(2, 16, 24, 4)
    assert torch.allclose(vae.encode(pixels), vae.encode(pixels[..., :3]))
    assert vae.decode(vae.encode(pixels)).shape == (2, 16, 24, 3)


def test_tiled_decode_one_tile_is_exact_and_many_tiles_run(vae: VaeHandle) -> None:
    torch.manual_seed(1)
    lat = torch.randn(1, 4, 12, 10)
    full = vae.decode(lat)
    assert torch.allclose(vae.decode_tiled(lat, tile=16, overlap=4), full, atol=1e-6)
    tiled = vae.decode_tiled(lat, tile=8, overlap=4)
    assert tiled.shape == full.shape and float(tiled.min()) >= 0 and float(tiled.max()) <= 1


def test_tiled_encode_one_tile_is_exact_and_many_tiles_run(vae: VaeHandle) -> None:
    torch.manual_seed(2)
    pixels = torch.rand(1, 48, 40, 3)
    full = vae.encode(pixels)
    assert torch.allclose(vae.encode_tiled(pixels, tile=64, overlap=16), full, atol=1e-6)
    tiled = vae.encode_tiled(pixels, tile=32, overlap=16)
    assert tiled.shape == full.shape and torch.isfinite(tiled).all()


def test_tiled_blending_is_exact_for_local_ops() -> None:
    x = torch.randn(2, 3, 40, 56)
    down = tiled_apply(lambda t: F.avg_pool2d(t, 8), x, tile=16, overlap=8, scale=1 / 8, out_channels=3)
    assert torch.allclose(down, F.avg_pool2d(x, 8), atol=1e-6)
    up = tiled_apply(lambda t: F.interpolate(t, scale_factor=8.0), x[:, :, :7, :9], tile=4, overlap=2, scale=8,
                     out_channels=3)
    assert torch.allclose(up, F.interpolate(x[:, :, :7, :9], scale_factor=8.0), atol=1e-6)


def test_too_small_image(vae: VaeHandle) -> None:
    with pytest.raises(ValueError, match="smaller than 8x8"):
        vae.encode(torch.rand(1, 4, 16, 3))


def test_gpu_batch_size_follows_free_memory(vae: VaeHandle) -> None:
    from types import SimpleNamespace

    clone = vae.clone()
    clone.manager = SimpleNamespace(  # type: ignore[assignment]
        policy=SimpleNamespace(device=torch.device("meta"), free_memory=lambda: 100_000_000,
                               device_for=lambda kind: torch.device("meta")))
    per_item = 64 * 64 * 1800 * 4  # fp32
    assert clone._batch_size(64 * 64, 1800) == 100_000_000 // per_item == 3
    clone.manager.policy.free_memory = lambda: 10  # type: ignore[attr-defined]
    assert clone._batch_size(64 * 64, 1800) == 1
    assert vae._batch_size(64 * 64, 1800) >= 1 << 30  # CPU: the whole batch at once


def test_comfyui_names_for_the_scale_and_the_crop(vae: VaeHandle) -> None:
    """`comfy.sd.VAE`'s names packs read (VideoHelperSuite's batched encode / combine)."""
    assert vae.downscale_ratio == vae.upscale_ratio == 8
    assert vae.spacial_compression_encode() == vae.spacial_compression_decode() == 8
    pixels = torch.rand(1, 21, 30, 3)
    cropped = vae.vae_encode_crop_pixels(pixels)
    assert cropped.shape == (1, 16, 24, 3) and torch.equal(cropped, pixels[:, 2:18, 3:27])
