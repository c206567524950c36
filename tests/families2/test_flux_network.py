"""Flux.1 dev / schnell: detection, dtype kept (bf16 matrices mapped, cast per layer), and ComfyUI's final latents
and decoded images reproduced from the golden cond / pooled / noise through engine.sampling (no text encoders)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2, rel_err

DEV = "comfy__flux_dev__txt2img__euler__simple__128x128"
SCHNELL = "comfy__flux_schnell__txt2img__euler__simple__4steps"


@pytest.fixture(scope="module")
def manager() -> Any:
    from engine.device import DevicePolicy
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    return ModelManager(DevicePolicy.cpu())


def test_flux_detection_from_shapes() -> None:
    from engine.detect_flow import detect_flux
    from engine.safetensors_header import read_safetensors_header

    for name, dev in (("tiny-flux1-dev", True), ("tiny-flux1-schnell", False)):
        shapes = read_safetensors_header(FAM2 / f"{name}.safetensors").shapes()
        family, cfg = detect_flux(shapes, "", name)
        real = json.loads((FAM2 / f"{name}.config.json").read_text())
        assert family.name == ("flux1_dev" if dev else "flux1_schnell")
        assert cfg.guidance_embed is dev
        assert (cfg.hidden_size, cfg.num_heads, cfg.depth, cfg.depth_single_blocks) == (
            real["hidden_size"], real["num_heads"], real["depth"], real["depth_single_blocks"])
        assert list(cfg.axes_dim) == real["axes_dim"] and cfg.context_dim == real["context_in_dim"]
        assert cfg.vec_in_dim == real["vec_in_dim"] and cfg.mlp_ratio == real["mlp_ratio"]


def test_flux_detection_full_size_layout() -> None:
    """The real flux1-dev key/shape set (built here from the published layout) detects as 3072 / 24 / 19 / 38."""
    from engine.detect_flow import detect_flux

    h, mlp = 3072, 12288
    shapes: dict[str, tuple[int, ...]] = {"img_in.weight": (h, 64), "txt_in.weight": (h, 4096),
                                          "vector_in.in_layer.weight": (h, 768),
                                          "guidance_in.in_layer.weight": (h, 256)}
    for i in range(19):
        shapes[f"double_blocks.{i}.img_attn.norm.query_norm.scale"] = (128,)
        shapes[f"double_blocks.{i}.img_attn.qkv.bias"] = (3 * h,)
        shapes[f"double_blocks.{i}.img_mlp.0.weight"] = (mlp, h)
    for i in range(38):
        shapes[f"single_blocks.{i}.linear1.weight"] = (3 * h + mlp, h)
    family, cfg = detect_flux(shapes)
    assert family.name == "flux1_dev"
    assert (cfg.num_heads, cfg.depth, cfg.depth_single_blocks, cfg.axes_dim) == (24, 19, 38, (16, 56, 56))
    del shapes["guidance_in.in_layer.weight"]
    assert detect_flux(shapes)[0].name == "flux1_schnell"


def test_flux_keeps_file_dtype(manager: Any) -> None:
    """bf16 matrices are adopted as the file's memory-mapped tensors (no fp32 copy); vectors are fp32."""
    from engine.loading import load_unet

    model = load_unet(FAM2 / "tiny-flux1-dev.safetensors", manager)
    net = model.diffusion_model
    mats = [p for p in net.parameters() if p.ndim >= 2]
    assert mats and all(p.dtype == torch.bfloat16 for p in mats)
    assert all(p.dtype == torch.float32 for p in net.parameters() if p.ndim < 2)
    assert model.dtype == torch.float32
    matrix_bytes = sum(p.numel() * p.element_size() for p in mats)
    assert matrix_bytes == sum(p.numel() * 2 for p in mats)


@pytest.mark.parametrize("name,unet,shift", [(DEV, "tiny-flux1-dev", 0.4675), (SCHNELL, "tiny-flux1-schnell", None)])
def test_flux_golden_latent_from_golden_cond(name: str, unet: str, shift: float | None, manager: Any) -> None:
    from engine.loading import load_unet, load_vae
    from engine.sampling.flow_sampling import ModelSamplingFlux, flux_resolution_shift
    from engine.sampling.ksampler import sample

    model = load_unet(FAM2 / f"{unet}.safetensors", manager)
    if shift is not None:
        assert abs(flux_resolution_shift(128, 128) - shift) < 1e-12
        model.model_sampling = ModelSamplingFlux(flux_resolution_shift(128, 128))
    case = json.loads((GOLDEN2 / f"{name}.json").read_text())
    steps = int(case["graph"]["5"]["inputs"]["steps"])
    load = lambda suffix: torch.from_numpy(np.load(GOLDEN2 / f"{name}.{suffix}.npy"))  # noqa: E731
    pos = [[load("cond"), {"pooled_output": load("cond_pooled"), "guidance": 3.5}]]
    neg = [[load("uncond"), {"pooled_output": load("uncond_pooled")}]]
    out = sample(model, load("noise"), steps, 1.0, "euler", "simple", pos, neg, torch.zeros(1, 16, 16, 16), seed=0)
    err = rel_err(out.numpy(), np.load(GOLDEN2 / f"{name}.latent.npy"))
    image = load_vae(FAM2 / "tiny-flux-ae.safetensors", manager).decode(out)
    img_err = float(np.abs(image.numpy() - np.load(GOLDEN2 / f"{name}.image.npy")).max())
    print(name, {"latent_rel": err, "image_abs": img_err})
    assert err < 1e-5 and img_err < 1e-4
