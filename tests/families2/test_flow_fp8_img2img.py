"""fp8 (UNETLoader weight_dtype, and an fp8 file) for Flux and SD3.5, and img2img / noise-mask inpainting on
the flow families through the real nodes. No ComfyUI goldens exist for these; the checks are: fp8 matrices are
stored as fp8 and upcast per layer; an fp8 file equals the bf16 file loaded with weight_dtype fp8; the fp8
latent stays near the bf16 golden (measured); img2img follows the flow rule at its first step and inpainting keeps
the unmasked latent cells."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2, rel_err

DEV = "comfy__flux_dev__txt2img__euler__simple__128x128"
SD3 = "comfy__sd35m__triple_clip_loader__euler__sgm_uniform__shift3"


@pytest.fixture(scope="module")
def fp8_file(models2_base: Path) -> str:
    """tiny-flux1-dev with every matrix stored as float8_e4m3fn (the layout of fp8 Flux files)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(FAM2 / "tiny-flux1-dev.safetensors"))
    out = {k: (v.to(torch.float8_e4m3fn) if v.ndim >= 2 else v) for k, v in sd.items()}
    target = models2_base / "models" / "diffusion_models" / "tiny-flux1-dev-fp8.safetensors"
    save_file(out, str(target))
    return target.name


def _latent(run2: Any, graph: dict[str, Any], pid: str, node: str = "5") -> torch.Tensor:
    out = run2(graph, pid)
    assert out.status == "success", out.error
    return out.values[node][0][0]["samples"]


@pytest.mark.parametrize("weight_dtype", ["fp8_e4m3fn", "fp8_e5m2"])
def test_flux_unet_loader_fp8_weight_dtype(weight_dtype: str, run2: Any, fp8_file: str) -> None:

    case = json.loads((GOLDEN2 / f"{DEV}.json").read_text())
    graph = copy.deepcopy(case["graph"])
    graph["40"]["inputs"]["weight_dtype"] = weight_dtype
    graph["7"]["inputs"]["filename_prefix"] = f"fp8_{weight_dtype}"
    out = run2(graph, f"fp8_{weight_dtype}")
    assert out.status == "success", out.error
    net = out.values["40"][0][0].diffusion_model
    want = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}[weight_dtype]
    assert {p.dtype for p in net.parameters() if p.ndim >= 2} == {want}
    latent = out.values["5"][0][0]["samples"]
    err = rel_err(latent.numpy(), np.load(GOLDEN2 / f"{DEV}.latent.npy"))
    print(weight_dtype, "latent_rel vs bf16 golden", err)
    assert 0 < err < 0.5
    if weight_dtype == "fp8_e4m3fn":
        file_graph = copy.deepcopy(graph)
        file_graph["40"]["inputs"].update(unet_name=fp8_file, weight_dtype="default")
        file_graph["7"]["inputs"]["filename_prefix"] = "fp8_file"
        assert bool((_latent(run2, file_graph, "fp8_file") == latent).all())


def test_sd3_unet_loader_fp8(run2: Any) -> None:
    case = json.loads((GOLDEN2 / f"{SD3}.json").read_text())
    graph = copy.deepcopy(case["graph"])
    loader = next(k for k, v in graph.items() if v["class_type"] == "CheckpointLoaderSimple")
    graph[loader] = {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny-sd35m-unet.safetensors",
                                                            "weight_dtype": "fp8_e4m3fn"}}
    vae_users = [v for v in graph.values() if v["inputs"].get("vae") == [loader, 2]]
    graph["90"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd35m.safetensors"}}
    for v in vae_users:
        v["inputs"]["vae"] = ["90", 2]
    out = run2(graph, "sd3fp8")
    assert out.status == "success", out.error
    err = rel_err(out.values["5"][0][0]["samples"].numpy(), np.load(GOLDEN2 / f"{SD3}.latent.npy"))
    print("sd3 fp8_e4m3fn latent_rel vs golden", err)
    assert 0 < err < 0.5


def _img2img_graph(case: str, denoise: float, inpaint: bool) -> dict[str, Any]:
    graph = copy.deepcopy(json.loads((GOLDEN2 / f"{case}.json").read_text())["graph"])
    vae = graph["6"]["inputs"]["vae"]
    graph["30"] = {"class_type": "LoadImage", "inputs": {"image": "init_128x64.png"}}
    graph["31"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["30", 0], "vae": vae}}
    graph["5"]["inputs"].update(latent_image=["31", 0], denoise=denoise, steps=4)
    if inpaint:
        graph["32"] = {"class_type": "LoadImageMask", "inputs": {"image": "mask_128x64.png", "channel": "red"}}
        graph["33"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["31", 0], "mask": ["32", 0]}}
        graph["5"]["inputs"]["latent_image"] = ["33", 0]
    graph["7"]["inputs"]["filename_prefix"] = f"{case[:20]}_{inpaint}"
    return graph


def _reference_img2img(values: dict[str, Any], model_node: str, steps: int, denoise: float, seed: int,
                       cfg: float) -> torch.Tensor:
    """ComfyUI's img2img written out for a flow model: partial schedule, x = s0 * noise + (1 - s0) * latent_in,
    Euler steps on CFG-mixed x0, latent scaled in / out with the family's shift."""
    from engine.sampling import calculate_sigmas, prepare_noise

    model = values[model_node][0][0]
    latent = values["31"][0][0]["samples"]
    cond, uncond = values["5pos"], values["5neg"]
    fmt = model.latent_format
    sigmas = calculate_sigmas(model.model_sampling, "simple" if cfg == 1.0 else "sgm_uniform",
                              int(steps / denoise))[-(steps + 1):]
    x = sigmas[0] * prepare_noise(latent, seed) + (1 - sigmas[0]) * (latent - fmt.shift_factor) * fmt.scale_factor

    def x0(entry: Any, sigma: torch.Tensor) -> torch.Tensor:
        y = model.adm(entry[1], tuple(x.shape))
        return model.apply_model(x, sigma.reshape(1), entry[0], y=y)

    with torch.no_grad():
        for i in range(steps):
            s = sigmas[i]
            den = x0(cond, s)
            if cfg != 1.0:
                un = x0(uncond, s)
                den = un + (den - un) * cfg
            x = x + (x - den) / s * (sigmas[i + 1] - s)
    return x / fmt.scale_factor + fmt.shift_factor


@pytest.mark.parametrize("case", [DEV, SD3])
def test_flow_img2img_and_inpaint(case: str, run2: Any) -> None:
    from PIL import Image

    graph = _img2img_graph(case, 0.5, False)
    out = run2(graph, f"i2i_{case}")
    assert out.status == "success", out.error
    enc = out.values["31"][0][0]["samples"]
    assert enc.shape[1] == 16
    ks = graph["5"]["inputs"]
    values = dict(out.values)
    values["5pos"] = out.values[ks["positive"][0]][0][0][0]
    values["5neg"] = out.values[ks["negative"][0]][0][0][0]
    ref = _reference_img2img(values, ks["model"][0], 4, 0.5, int(ks["seed"]), float(ks["cfg"]))
    i2i_err = rel_err(out.values["5"][0][0]["samples"].numpy(), ref.numpy())
    inp = run2(_img2img_graph(case, 1.0, True), f"inp_{case}")
    assert inp.status == "success", inp.error
    mask = np.asarray(Image.open(FAM2.parent / "tiny-sd15" / "mask_128x64.png").convert("RGB"))[..., 0] / 255.0
    keep = mask[::8, ::8] == 0
    sampled = inp.values["5"][0][0]["samples"].numpy()
    kept_err = float(np.abs(sampled[..., keep] - enc.numpy()[..., keep]).max())
    changed = float(np.abs(sampled[..., ~keep] - enc.numpy()[..., ~keep]).max())
    print(case, {"img2img_rel_to_reference": i2i_err, "inpaint_kept_max": kept_err, "inpaint_changed_max": changed})
    assert i2i_err < 1e-5
    assert kept_err < 1e-4 and changed > 1e-2
