"""InstructPix2Pix: an 8-input-channel SD1.x UNet is detected, and InstructPixToPixConditioning's image latent is
its extra input (raw VAE scale, zeros when absent)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from catalogue_derive import SD15, call  # type: ignore[import-not-found]

from engine.sampling import sample


@pytest.fixture(scope="module")
def ip2p(derived: dict[str, Path], manager: Any) -> Any:
    from engine.loading import load_checkpoint

    # the recipe's file carries no text-encoder config, so its CLIP (2 heads) cannot be configured: MODEL + VAE only
    return load_checkpoint(derived["ip2p"], manager, output_clip=False)


@pytest.fixture(scope="module")
def sd15(manager: Any) -> Any:
    from engine.loading import load_checkpoint

    return load_checkpoint(SD15, manager, output_clip=False, output_vae=False)[0]


def conds() -> tuple[list[Any], list[Any]]:
    g = torch.Generator().manual_seed(4)
    return [[torch.randn(1, 77, 32, generator=g), {"pooled_output": torch.zeros(1, 32)}]], \
        [[torch.randn(1, 77, 32, generator=g), {}]]


def test_detected_as_sd15_eps_with_8_input_channels(ip2p: Any) -> None:
    model = ip2p[0]
    assert model.in_channels == 8 and model.family.name == "sd15"
    assert model.latent_format.latent_channels == 4
    assert model.model_sampling.prediction == "eps"


def test_object_info_matches_comfyui(registry: Any) -> None:
    info = registry.object_info()["InstructPixToPixConditioning"]
    assert list(info["input"]["required"]) == ["positive", "negative", "vae", "pixels"]
    assert info["output"] == ["CONDITIONING", "CONDITIONING", "LATENT"]
    assert info["output_name"] == ["positive", "negative", "latent"]
    assert info["category"] == "conditioning/instructpix2pix"


def test_conditioning_crops_encodes_and_returns_an_empty_latent(registry: Any, ip2p: Any) -> None:
    vae = ip2p[2]
    pixels = torch.rand(1, 68, 133, 3, generator=torch.Generator().manual_seed(1))
    pos, neg = conds()
    p, n, latent = call(registry, "InstructPixToPixConditioning", positive=pos, negative=neg, vae=vae, pixels=pixels)
    want = vae.encode(pixels[:, 2:66, 2:130, :])
    assert latent["samples"].shape == (1, 4, 8, 16) and not latent["samples"].any()
    for out, src in ((p, pos), (n, neg)):
        assert len(out) == 1 and out[0][0] is src[0][0]
        assert torch.equal(out[0][1]["concat_latent_image"], want)
        assert "concat_latent_image" not in src[0][1]  # inputs untouched
    assert torch.equal(p[0][1]["pooled_output"], pos[0][1]["pooled_output"])


def test_the_unet_gets_the_raw_image_latent_as_channels_4_to_7(registry: Any, ip2p: Any) -> None:
    model, _, vae = ip2p
    pixels = torch.rand(1, 64, 128, 3, generator=torch.Generator().manual_seed(2))
    pos, neg = conds()
    p, n, latent = call(registry, "InstructPixToPixConditioning", positive=pos, negative=neg, vae=vae, pixels=pixels)
    seen: list[torch.Tensor] = []
    conv = model.diffusion_model.input_blocks[0][0]
    handle = conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        noise = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(3))
        out = sample(model, noise, 2, 5.0, "euler", "normal", p, n, latent["samples"], seed=3)
    finally:
        handle.remove()
    assert torch.isfinite(out).all() and out.shape == (1, 4, 8, 16)
    assert len(seen) == 2 and all(x.shape == (2, 8, 8, 16) for x in seen)  # cond + uncond, one call per step
    image = p[0][1]["concat_latent_image"]
    for x in seen:
        assert torch.equal(x[:, 4:], image.expand(2, -1, -1, -1))


def test_without_an_image_the_extra_channels_are_zero(ip2p: Any, sd15: Any) -> None:
    """Channels 0-3 of the InstructPix2Pix input conv are tiny-sd15's, so zero extra channels give tiny-sd15's
    result (up to summation order)."""
    pos, neg = conds()
    noise = torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(5))
    a = sample(ip2p[0], noise, 3, 5.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 16), seed=5)
    b = sample(sd15, noise, 3, 5.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 16), seed=5)
    assert float((a - b).abs().max()) < 1e-4 * float(b.abs().max())


def test_image_latent_of_another_size_is_resized_and_batched() -> None:
    from engine.ip2p import ip2p_concat

    image = torch.arange(2 * 4 * 4 * 8, dtype=torch.float32).reshape(2, 4, 4, 8)
    noise = torch.zeros(3, 4, 8, 16)
    out = ip2p_concat({"concat_latent_image": image}, noise)
    assert out.shape == (3, 4, 8, 16)
    # ComfyUI's resize_to_batch_size to 3 from 2 picks items 0, 1, 1 (floor((i + 0.5) * 2 / 3))
    resized = torch.nn.functional.interpolate(image, size=(8, 16), mode="bilinear")
    assert torch.equal(out, resized[[0, 1, 1]])
