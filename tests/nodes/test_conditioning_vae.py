"""Conditioning and VAE nodes around a fake VAE (a stand-in dependency, the nodes are under test)."""
from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from nodes._base import NodeInputError


class FakeVae:
    """Encodes by 8x8 average pooling of the first channel (x4), decodes by nearest upsampling."""

    def __init__(self) -> None:
        self.encoded: list[torch.Tensor] = []

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.encoded.append(pixels.clone())
        pooled = F.avg_pool2d(pixels.movedim(-1, 1)[:, :1], 8)
        return pooled.repeat(1, 4, 1, 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return F.interpolate(latent[:, :3], scale_factor=8).movedim(1, -1)


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def test_vae_encode_crops_to_multiple_of_8(registry: Any) -> None:
    vae = FakeVae()
    pixels = torch.rand(1, 21, 35, 4)
    (lat,) = call(registry, "VAEEncode", pixels=pixels, vae=vae)
    assert lat["samples"].shape == (1, 4, 2, 4)
    assert torch.equal(vae.encoded[0], pixels[:, 2:18, 1:33, :3])
    (img,) = call(registry, "VAEDecode", samples=lat, vae=vae)
    assert img.shape == (1, 16, 32, 3)
    with pytest.raises(NodeInputError, match="VAEEncode.*input 'vae'"):
        call(registry, "VAEEncode", pixels=pixels, vae=None)


def test_tiled_nodes_pass_pixel_sizes_to_the_vae_s_tiling(registry: Any, fixtures_dir: Any) -> None:
    """VAEDecodeTiled / VAEEncodeTiled take tile sizes in pixels; the VAE's own tiling (tested in
    tests/engine/test_vae_handle.py) takes latent tiles for decoding; overlaps over a quarter tile are cut."""
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    vae = load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", manager)[2]
    lat = {"samples": torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(0))}
    (tiled,) = call(registry, "VAEDecodeTiled", samples=lat, vae=vae, tile_size=64, overlap=32)
    assert torch.equal(tiled, vae.decode_tiled(lat["samples"], 8, 2))  # overlap 32 > 64 / 4 -> 16 px
    assert not torch.equal(tiled, vae.decode_tiled(lat["samples"], 8, 4))
    pixels = torch.rand(1, 70, 90, 4, generator=torch.Generator().manual_seed(1))
    (enc,) = call(registry, "VAEEncodeTiled", pixels=pixels, vae=vae, tile_size=64, overlap=32)
    assert torch.equal(enc["samples"], vae.encode_tiled(pixels[:, 3:67, 1:89, :3], 64, 32))
    assert enc["samples"].shape == (1, 4, 8, 11)


def test_vae_encode_for_inpaint_greys_and_grows(registry: Any) -> None:
    vae = FakeVae()
    pixels = torch.ones(1, 64, 128, 3)
    mask = torch.zeros(1, 64, 128)
    mask[:, 16:32, 32:48] = 1
    (lat,) = call(registry, "VAEEncodeForInpaint", pixels=pixels, vae=vae, mask=mask, grow_mask_by=6)
    sent = vae.encoded[0]
    assert sent[0, 20, 40].tolist() == [0.5, 0.5, 0.5] and sent[0, 0, 0].tolist() == [1.0, 1.0, 1.0]
    nm = lat["noise_mask"]
    assert nm.shape == (1, 1, 64, 128)
    assert nm.sum() > mask.sum() and nm[0, 0, 14, 30] == 1 and nm[0, 0, 0, 0] == 0
    (lat0,) = call(registry, "VAEEncodeForInpaint", pixels=pixels, vae=vae, mask=mask, grow_mask_by=0)
    assert lat0["noise_mask"].sum() == mask.sum()
    with pytest.raises(NodeInputError, match=r"VAEEncodeForInpaint.*input 'mask'.*64x64.*128x64"):
        call(registry, "VAEEncodeForInpaint", pixels=pixels, vae=vae, mask=torch.ones(1, 64, 64), grow_mask_by=6)


def test_inpaint_model_conditioning(registry: Any) -> None:
    vae = FakeVae()
    pixels = torch.ones(1, 64, 128, 3)
    mask = torch.zeros(1, 32, 64)  # half resolution: resized bilinearly
    mask[:, 8:16, 16:24] = 1
    pos = [[torch.zeros(1, 77, 8), {"pooled_output": None}]]
    neg = [[torch.ones(1, 77, 8), {}]]
    p, n, lat = call(registry, "InpaintModelConditioning", positive=pos, negative=neg, vae=vae, pixels=pixels,
                     mask=mask, noise_mask=True)
    assert lat["samples"].shape == (1, 4, 8, 16) and lat["noise_mask"].shape == (1, 1, 64, 128)
    assert p[0][1]["concat_latent_image"].shape == (1, 4, 8, 16) and "concat_mask" in n[0][1]
    assert "concat_mask" not in pos[0][1]  # inputs are not mutated
    assert p[0][1]["concat_latent_image"].min() < 1.0 and lat["samples"].min() == 1.0
    _, _, lat2 = call(registry, "InpaintModelConditioning", positive=pos, negative=neg, vae=vae, pixels=pixels,
                      mask=mask, noise_mask=False)
    assert "noise_mask" not in lat2


def test_conditioning_nodes(registry: Any) -> None:
    c1 = [[torch.ones(1, 77, 8), {"pooled_output": torch.ones(1, 8)}]]
    c2 = [[torch.zeros(1, 77, 8), {}]]
    (both,) = call(registry, "ConditioningCombine", conditioning_1=c1, conditioning_2=c2)
    assert len(both) == 2
    (area,) = call(registry, "ConditioningSetArea", conditioning=c1, width=64, height=128, x=16, y=8, strength=0.5)
    assert area[0][1]["area"] == (16, 8, 1, 2) and area[0][1]["strength"] == 0.5
    assert "area" not in c1[0][1]
    (pct,) = call(registry, "ConditioningSetAreaPercentage", conditioning=c1, width=0.5, height=1.0, x=0.25,
                  y=0.0, strength=1.0)
    assert pct[0][1]["area"] == ("percentage", 1.0, 0.5, 0.0, 0.25)
    (mk,) = call(registry, "ConditioningSetMask", conditioning=c1, mask=torch.ones(4, 4), strength=0.7,
                 set_cond_area="mask bounds")
    assert mk[0][1]["mask"].shape == (1, 4, 4) and mk[0][1]["set_area_to_bounds"] is True
    assert mk[0][1]["mask_strength"] == 0.7
    (zero,) = call(registry, "ConditioningZeroOut", conditioning=c1)
    assert not zero[0][0].any() and not zero[0][1]["pooled_output"].any() and c1[0][0].all()
    (rng,) = call(registry, "ConditioningSetTimestepRange", conditioning=c1, start=0.2, end=0.8)
    assert (rng[0][1]["start_percent"], rng[0][1]["end_percent"]) == (0.2, 0.8)
    with pytest.raises(RuntimeError, match="clip input is invalid: None"):
        call(registry, "CLIPTextEncode", clip=None, text="x")
