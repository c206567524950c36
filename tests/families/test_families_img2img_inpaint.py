"""img2img and noise-mask inpainting on the SD2.1-v, SDXL and refiner fixtures through the real nodes.

No ComfyUI goldens exist for these, so img2img is compared with ComfyUI's rules written out by hand (partial
schedule, noise at the first sigma, Euler, CFG, ADM), and inpainting checks that the kept region stays the
encoded image while the repainted region changes."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
STEPS, DENOISE, CFG, SEED = 4, 0.5, 6.0, 11


def _graph(ckpt: str, inpaint: bool) -> dict[str, Any]:
    g: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "init_128x64.png"}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": SEED, "steps": STEPS, "cfg": CFG,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["5", 0], "denoise": DENOISE}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    if inpaint:
        g["10"] = {"class_type": "LoadImageMask", "inputs": {"image": "mask_128x64.png", "channel": "red"}}
        g["6"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["10", 0]}}
        g["7"]["inputs"].update(latent_image=["6", 0], denoise=1.0)
    return g


@pytest.fixture(scope="module")
def inputs(runtime: Any) -> None:
    for name in ("init_128x64.png", "mask_128x64.png"):
        shutil.copy(FIX / name, Path(runtime.services.paths.input_dir) / name)


def _reference_img2img(values: dict[str, Any]) -> torch.Tensor:
    from engine.adm import adm_vector
    from engine.sampling import calculate_sigmas, prepare_noise

    model = values["1"][0][0]
    latent = values["5"][0][0]["samples"]
    cond, uncond = values["2"][0][0][0], values["3"][0][0][0]
    y_c = adm_vector(model.family.adm, cond[1], tuple(latent.shape), "positive")
    y_u = adm_vector(model.family.adm, uncond[1], tuple(latent.shape), "negative")
    sigmas = calculate_sigmas(model.model_sampling, "normal", int(STEPS / DENOISE))[-(STEPS + 1):]
    scale = model.latent_format.scale_factor
    x = latent * scale + prepare_noise(latent, SEED) * sigmas[0]
    with torch.no_grad():
        for i in range(STEPS):
            s = sigmas[i:i + 1]
            c = model.apply_model(x, s, cond[0], y=y_c)
            u = model.apply_model(x, s, uncond[0], y=y_u)
            den = u + (c - u) * CFG
            x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x / scale


@pytest.mark.parametrize("ckpt", ["tiny-sd21v.safetensors", "tiny-sdxl.safetensors",
                                  "tiny-sdxl-refiner.safetensors"])
def test_img2img_follows_comfyui_rules(inputs: None, run: Any, rel: Any, ckpt: str) -> None:
    outcome = run(_graph(ckpt, inpaint=False), "i2i-" + ckpt)
    assert outcome.status == "success", outcome.error
    got = outcome.values["7"][0][0]["samples"]
    err = rel(got.numpy(), _reference_img2img(outcome.values).numpy())
    print(f"img2img {ckpt}: rel err {err:.2e}")
    assert err < 1e-5


@pytest.mark.parametrize("ckpt", ["tiny-sd21v.safetensors", "tiny-sdxl.safetensors",
                                  "tiny-sdxl-refiner.safetensors"])
def test_inpaint_keeps_unmasked_region(inputs: None, run: Any, ckpt: str) -> None:
    outcome = run(_graph(ckpt, inpaint=True), "inp-" + ckpt)
    assert outcome.status == "success", outcome.error
    got = outcome.values["7"][0][0]["samples"]
    original = outcome.values["5"][0][0]["samples"]
    mask = outcome.values["10"][0][0]
    keep = torch.nn.functional.interpolate(mask.reshape(1, 1, *mask.shape[-2:]), size=got.shape[-2:],
                                           mode="bilinear") == 0
    keep = keep.expand_as(got)
    assert keep.any() and (~keep).any()
    kept_err = float((got - original)[keep].abs().max() / original.abs().max())
    print(f"inpaint {ckpt}: kept-region rel err {kept_err:.2e}")
    assert kept_err < 1e-5
    assert float((got - original)[~keep].abs().max()) > 1e-2 * float(original.abs().max())
    assert np.isfinite(outcome.values["8"][0][0].numpy()).all()
