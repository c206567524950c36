"""End-to-end sampling parity with ComfyUI 0.3.64 on the tiny SD1.5 checkpoint (tests/fixtures/tiny-sd15).

The golden text-encoder outputs are fed to ``sample()`` so this tests sampling alone (the conditioning
of the ConditioningSetArea case needs one extra prompt encoding). Latents must match to 1e-4 relative
error (max abs difference / max abs value); measured about 1e-6 to 2.5e-6.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.sampling import prepare_noise, sample

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
TOL = 1e-4


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Any, Any, Any]]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the goldens were made with 2 threads
    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    yield load_checkpoint(FIX / "tiny-sd15.safetensors", manager)
    torch.set_num_threads(threads)


def rel_err(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.numpy() - want).max() / np.abs(want).max())


def arrays(folder: str, case: str) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    base = FIX / folder / case
    meta = json.loads(base.with_suffix(".json").read_text())
    cond = torch.from_numpy(np.load(f"{base}.cond.npy"))
    uncond = torch.from_numpy(np.load(f"{base}.uncond.npy"))
    return meta, cond, uncond, np.load(f"{base}.latent.npy"), np.load(f"{base}.noise.npy")


def load_image(name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(FIX / name).convert("RGB"))).float()[None] / 255.0


@pytest.mark.parametrize("case", ["txt2img__euler__normal", "txt2img__dpmpp_2m__karras", "img2img__euler__normal",
                                  "inpaint__euler__normal"])
def test_golden_node_chain(loaded: tuple[Any, Any, Any], case: str) -> None:
    model, _clip, vae = loaded
    meta, cond, uncond, want, want_noise = arrays("golden", case)
    latent = torch.zeros(meta["latent_shape"])
    mask = None
    if meta["init_image"]:
        latent = vae.encode(load_image(meta["init_image"]))
    if meta["mask"]:
        m = torch.from_numpy(np.array(Image.open(FIX / meta["mask"]).convert("L"))).float() / 255.0
        mask = m.reshape(-1, 1, m.shape[-2], m.shape[-1])  # SetLatentNoiseMask
    noise = prepare_noise(latent, meta["seed"])
    assert np.array_equal(noise.numpy(), want_noise)
    out = sample(model, noise, meta["steps"], meta["cfg"], meta["sampler_name"], meta["scheduler"], [[cond, {}]],
                 [[uncond, {}]], latent, denoise=meta["denoise"], noise_mask=mask, seed=meta["seed"])
    assert rel_err(out, want) <= TOL


@pytest.mark.parametrize("case", ["txt2img__dpmpp_2m_sde__karras", "txt2img__batch2__euler_ancestral__normal",
                                  "txt2img__uni_pc__karras", "txt2img__weighted_prompt__dpmpp_2m__karras"])
def test_golden_graph_single_ksampler(loaded: tuple[Any, Any, Any], case: str) -> None:
    model = loaded[0]
    meta, cond, uncond, want, want_noise = arrays("golden_graphs", f"comfy__{case}")
    k = meta["graph"]["5"]["inputs"]
    latent = torch.zeros(meta["latent_shape"])
    noise = prepare_noise(latent, k["seed"])
    assert np.array_equal(noise.numpy(), want_noise)
    calls = {"n": 0}

    def count(i: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        calls["n"] += 1

    out = sample(model, noise, k["steps"], k["cfg"], k["sampler_name"], k["scheduler"], [[cond, {}]],
                 [[uncond, {}]], latent, denoise=k["denoise"], seed=k["seed"], callback=count)
    assert calls["n"] == meta["sampler_calls"][0]["nfe"]
    assert rel_err(out, want) <= TOL


def test_golden_two_stage_ksampler_advanced(loaded: tuple[Any, Any, Any]) -> None:
    model = loaded[0]
    meta, cond, uncond, want, _ = arrays("golden_graphs", "comfy__adv__two_stage_refiner")
    first, second = meta["graph"]["20"]["inputs"], meta["graph"]["5"]["inputs"]
    latent = torch.zeros(meta["latent_shape"])
    stage1 = sample(model, prepare_noise(latent, first["noise_seed"]), first["steps"], first["cfg"],
                    first["sampler_name"], first["scheduler"], [[cond, {}]], [[uncond, {}]], latent,
                    start_step=first["start_at_step"], last_step=first["end_at_step"], force_full_denoise=False,
                    seed=first["noise_seed"])
    out = sample(model, torch.zeros_like(stage1), second["steps"], second["cfg"], second["sampler_name"],
                 second["scheduler"], [[cond, {}]], [[uncond, {}]], stage1, disable_noise=True,
                 start_step=second["start_at_step"], last_step=second["end_at_step"], force_full_denoise=True,
                 seed=second["noise_seed"])
    assert rel_err(out, want) <= TOL


def test_golden_set_area_combine(loaded: tuple[Any, Any, Any]) -> None:
    model, clip, _vae = loaded
    meta, cond, uncond, want, _ = arrays("golden_graphs", "comfy__cond__set_area_combine__euler__karras")
    g = meta["graph"]
    a, k = g["32"]["inputs"], g["5"]["inputs"]
    car = clip.encode_from_tokens(clip.tokenize(g["30"]["inputs"]["text"]))
    area = {"area": (a["height"] // 8, a["width"] // 8, a["y"] // 8, a["x"] // 8), "strength": a["strength"],
            "set_area_to_bounds": False}
    latent = torch.zeros(meta["latent_shape"])
    out = sample(model, prepare_noise(latent, k["seed"]), k["steps"], k["cfg"], k["sampler_name"], k["scheduler"],
                 [[cond, {}], [car, area]], [[uncond, {}]], latent, denoise=k["denoise"], seed=k["seed"])
    assert rel_err(out, want) <= TOL
