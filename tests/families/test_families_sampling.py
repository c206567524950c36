"""ModelSamplingDiscrete (eps / v / zero-SNR override), CheckpointLoader's config parameterization, and the SDXL
base -> refiner hand-off with two KSamplerAdvanced nodes against a hand-written Euler loop (ComfyUI's rules)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "families" / "golden"
SD21 = "comfy__sd21v__txt2img__euler__normal"


def _sd21_graph(patch: str | None, zsnr: bool = False) -> dict[str, Any]:
    graph = json.loads((GOLDEN / f"{SD21}.json").read_text())["graph"]
    if patch:
        graph["90"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": patch,
                                                                         "zsnr": zsnr}}
        for node in graph.values():
            if node["inputs"].get("model") == ["1", 0] and node is not graph["90"]:
                node["inputs"]["model"] = ["90", 0]
    return graph


def _latent(run: Any, graph: dict[str, Any], pid: str) -> np.ndarray:
    case = json.loads((GOLDEN / f"{SD21}.json").read_text())
    outcome = run(graph, pid)
    assert outcome.status == "success", outcome.error
    return outcome.values[str(case["latent_node"])][0][0]["samples"].numpy()


def test_model_sampling_discrete_override(run: Any, rel: Any) -> None:
    golden = np.load(GOLDEN / f"{SD21}.latent.npy")
    assert rel(_latent(run, _sd21_graph("v_prediction"), "v"), golden) < 5e-5  # same as detected
    eps = _latent(run, _sd21_graph("eps"), "eps")
    assert rel(eps, golden) > 1e-2  # the override changes the denoiser
    zsnr = _latent(run, _sd21_graph("v_prediction", zsnr=True), "zsnr")
    assert np.isfinite(zsnr).all() and rel(zsnr, golden) > 1e-3


def test_model_sampling_discrete_zsnr_schedule(runtime: Any) -> None:
    cls = runtime.registry.get("CheckpointLoaderSimple")
    model = cls().load_checkpoint(ckpt_name="tiny-sd21v.safetensors")[0]
    node = runtime.registry.get("ModelSamplingDiscrete")()
    (plain,) = node.patch(model, "eps", False)
    (zero,) = node.patch(model, "v_prediction", True)
    assert plain.model_sampling.prediction == "eps" and zero.model_sampling.prediction == "v"
    assert model.model_sampling.prediction == "v"  # the input handle is untouched
    assert float(zero.model_sampling.sigma_max) > 100 * float(plain.model_sampling.sigma_max)
    with pytest.raises(ValueError, match="lcm"):
        node.patch(model, "lcm", False)


@pytest.mark.parametrize("param,expected", [("v", "v"), ("eps", "eps")])
def test_checkpoint_loader_config_parameterization(runtime: Any, models_base: Path, param: str,
                                                   expected: str) -> None:
    configs = models_base / "models" / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / f"{param}.yaml").write_text(f"model:\n  params:\n    parameterization: \"{param}\"\n")
    cls = runtime.registry.get("CheckpointLoader")
    model, clip, vae = cls().load_checkpoint(config_name=f"{param}.yaml", ckpt_name="tiny-sd21v.safetensors")
    assert model.model_sampling.prediction == expected and clip is not None and vae is not None


def _cfg_denoiser(model: Any, cond: list[Any], uncond: list[Any], cfg: float, shape: tuple[int, ...]) -> Any:
    from engine.adm import adm_vector

    y_c = adm_vector(model.family.adm, cond[0][1], shape, "positive")
    y_u = adm_vector(model.family.adm, uncond[0][1], shape, "negative")

    def denoise(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        c = model.apply_model(x, s, cond[0][0], y=y_c)
        u = model.apply_model(x, s, uncond[0][0], y=y_u)
        return u + (c - u) * cfg
    return denoise


def test_sdxl_base_to_refiner_handoff(runtime: Any, run: Any, rel: Any) -> None:
    from engine.sampling import calculate_sigmas, prepare_noise

    steps, switch, seed, cfg = 10, 6, 77, 5.0
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sdxl.safetensors"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sdxl-refiner.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"ascore": 6.0, "width": 64, "height": 64,
                                                                    "text": "a photo of a cat", "clip": ["2", 1]}},
        "6": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"ascore": 2.5, "width": 64, "height": 64,
                                                                    "text": "blurry", "clip": ["2", 1]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["1", 0], "add_noise": "enable", "noise_seed": seed, "steps": steps, "cfg": cfg,
            "sampler_name": "euler", "scheduler": "normal", "positive": ["3", 0], "negative": ["4", 0],
            "latent_image": ["7", 0], "start_at_step": 0, "end_at_step": switch,
            "return_with_leftover_noise": "enable"}},
        "9": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["2", 0], "add_noise": "disable", "noise_seed": seed, "steps": steps, "cfg": cfg,
            "sampler_name": "euler", "scheduler": "normal", "positive": ["5", 0], "negative": ["6", 0],
            "latent_image": ["8", 0], "start_at_step": switch, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["2", 2]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    outcome = run(graph, "handoff")
    assert outcome.status == "success", outcome.error
    got = outcome.values["9"][0][0]["samples"]

    # reference: ComfyUI's semantics written out (Euler, CFG, ADM per prompt type, latent scaling at the seam)
    v = outcome.values
    base, refiner = v["1"][0][0], v["2"][0][0]
    shape = (1, 4, 8, 8)
    sigmas = calculate_sigmas(base.model_sampling, "normal", steps)
    noise = prepare_noise(torch.zeros(shape), seed)
    scale = base.latent_format.scale_factor
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)
    d_base = _cfg_denoiser(base, v["3"][0][0], v["4"][0][0], cfg, shape)
    d_ref = _cfg_denoiser(refiner, v["5"][0][0], v["6"][0][0], cfg, shape)
    with torch.no_grad():
        for i in range(steps):
            if i == switch:
                x = (x / scale) * scale  # KSamplerAdvanced hands over a raw latent
            den = (d_base if i < switch else d_ref)(x, sigmas[i:i + 1])
            x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    want = x / scale
    assert rel(got.numpy(), want.numpy()) < 1e-5
    half = outcome.values["8"][0][0]["samples"]
    assert rel(got.numpy(), half.numpy()) > 1e-4  # the refiner's steps did change the handed-over latent
