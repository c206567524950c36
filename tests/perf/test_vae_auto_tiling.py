"""VaeHandle picks tiled decode / encode by itself when one call would not fit the memory it may use."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.device import DevicePolicy
from engine.handles import VaeHandle
from engine.loading import load_checkpoint
from engine.model_management import ModelManager


@pytest.fixture(scope="module")
def vae(fixtures_dir: Path) -> VaeHandle:
    torch.set_num_threads(1)
    _, _, v = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()),
                              output_clip=False)
    assert v is not None
    return v.clone()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def test_decode_goes_tiled_under_a_memory_cap_and_stays_close(vae: VaeHandle) -> None:
    z = torch.randn(1, 4, 48, 48, generator=torch.Generator().manual_seed(0)) * 4
    vae.max_memory = None
    whole = vae.decode(z)
    assert vae._auto_tile(384 * 384, 2200, 512) is None
    vae.max_memory = vae._call_bytes(256 * 256, 2200)  # a 384x384 decode no longer fits; 256x256 tiles do
    try:
        assert vae._auto_tile(384 * 384, 2200, 512) == 256
        tiled = vae.decode(z)
    finally:
        vae.max_memory = None
    assert tiled.shape == whole.shape == (1, 384, 384, 3)
    assert not torch.equal(tiled, whole)  # it really took the tiled path
    assert _psnr(tiled, whole) > 25.0
    assert _psnr(whole.roll(32, dims=2), whole) < 20.0  # the bound is tight enough to see a misplaced tile


def test_encode_goes_tiled_under_a_memory_cap_and_stays_close(vae: VaeHandle) -> None:
    g = torch.Generator().manual_seed(1)
    px = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=(384, 384),
                                         mode="bilinear").movedim(1, -1)
    whole = vae.encode(px)
    vae.max_memory = vae._call_bytes(256 * 256, 1800)
    try:
        tiled = vae.encode(px)
    finally:
        vae.max_memory = None
    assert tiled.shape == whole.shape == (1, 4, 48, 48)
    assert not torch.equal(tiled, whole)
    def rel(a: torch.Tensor) -> float:
        return float((a - whole).abs().mean() / whole.abs().mean())

    # random tiny weights make GroupNorm statistics tile-dependent; a misplaced tile would be far worse
    assert rel(tiled) < 0.3
    assert rel(tiled) < 0.5 * rel(whole.roll(4, dims=-1))


def test_tile_shrinks_until_it_fits_and_never_below_the_minimum(vae: VaeHandle) -> None:
    vae.max_memory = vae._call_bytes(130 * 130, 2200)
    try:
        assert vae._auto_tile(2048 * 2048, 2200, 512) == 128
        vae.max_memory = 1
        assert vae._auto_tile(2048 * 2048, 2200, 512) == 16 * vae.downscale
    finally:
        vae.max_memory = None


def test_full_size_2048_decode_plans_tiles_of_a_few_gb() -> None:
    from engine.networks.vae import AutoencoderKL, VAEConfig

    with torch.device("meta"):
        big = AutoencoderKL(VAEConfig())
    handle = VaeHandle(big, ModelManager(DevicePolicy.cpu()))
    handle.max_memory = 4 * 1024**3
    whole = handle._call_bytes(2048 * 2048, 2200)
    tile = handle._auto_tile(2048 * 2048, 2200, 512)
    assert whole > 16 * 1024**3 and tile is not None
    assert handle._call_bytes(tile * tile, 2200) <= handle.max_memory
