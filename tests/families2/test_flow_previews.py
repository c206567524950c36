"""latent2rgb previews of the 16-channel SD3 / Flux latents: ComfyUI's factor rows and biases, and the per-step
previews of a tiny Flux sampling run computed independently from each step's x0."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2

from engine.latent_formats import FLUX, SD3
from engine.preview import latent_preview, latent_to_rgb

# rows of ComfyUI's comfy/latent_formats.py (SD3 / Flux latent_rgb_factors and latent_rgb_factors_bias)
COMFY_ROWS = {"SD3": {0: (-0.0922, -0.0175, 0.0749), 15: (-0.1448, -0.1463, -0.1189)},
              "Flux": {0: (-0.0346, 0.0244, 0.0681), 9: (0.1008, 0.0755, -0.0421)}}
COMFY_BIAS = {"SD3": (0.2394, 0.2135, 0.1925), "Flux": (-0.0329, -0.0718, -0.0851)}


@pytest.mark.parametrize("fmt", [SD3, FLUX], ids=["SD3", "Flux"])
def test_one_hot_channels_give_the_factor_rows(fmt: Any) -> None:
    assert fmt.latent_channels == 16 and len(fmt.latent_rgb_factors) == 16
    bias = torch.tensor(COMFY_BIAS[fmt.name])
    torch.testing.assert_close(latent_to_rgb(torch.zeros(16, 1, 1), fmt)[0, 0], (bias + 1) / 2)
    for channel, row in COMFY_ROWS[fmt.name].items():
        lat = torch.zeros(1, 16, 2, 3)
        lat[0, channel] = 1.0
        rgb = latent_to_rgb(lat, fmt)
        assert rgb.shape == (2, 3, 3)
        torch.testing.assert_close(rgb[1, 2], (torch.tensor(row) + bias + 1) / 2)
    with pytest.raises(ValueError, match="latent has 4 channels; format .* previews 16"):
        latent_to_rgb(torch.zeros(4, 2, 2), fmt)


def test_flux_sampling_previews_each_step() -> None:
    from engine.device import DevicePolicy
    from engine.loading import load_unet
    from engine.model_management import ModelManager
    from engine.sampling.ksampler import sample

    torch.set_num_threads(1)
    model = load_unet(FAM2 / "tiny-flux1-schnell.safetensors", ModelManager(DevicePolicy.cpu()))
    case = "comfy__flux_schnell__txt2img__euler__simple__4steps"
    load = lambda s: torch.from_numpy(np.load(GOLDEN2 / f"{case}.{s}.npy"))  # noqa: E731
    pos = [[load("cond"), {"pooled_output": load("cond_pooled")}]]
    neg = [[load("uncond"), {"pooled_output": load("uncond_pooled")}]]
    frames: list[tuple[Any, torch.Tensor]] = []

    def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        frames.append((latent_preview(model, x0, "latent2rgb"), x0.clone()))

    sample(model, load("noise"), 4, 1.0, "euler", "simple", pos, neg, torch.zeros(1, 16, 16, 16), callback=callback)
    assert len(frames) == 4
    factors, bias = np.array(FLUX.latent_rgb_factors), np.array(FLUX.latent_rgb_bias)
    for image, x0 in frames:
        assert image is not None and image.size == (16, 16) and image.mode == "RGB"
        rgb = x0[0].permute(1, 2, 0).double().numpy() @ factors + bias
        expected = np.round(np.clip((rgb + 1) / 2, 0, 1) * 255)
        assert np.abs(np.asarray(image, dtype=np.float64) - expected).max() <= 1
    assert np.asarray(frames[-1][0]).std() > 0  # not a flat image
