"""engine.checkpoint_save on the SD2-v, SDXL and SDXL-refiner tiny checkpoints (tests/fixtures/families): the saved
key set is the original single-file layout (less the DDPM buffers ComfyUI does not save, plus its v_pred marker),
the metadata is ComfyUI's, and the files load back with the same numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.checkpoint_save import (
    checkpoint_metadata,
    checkpoint_state,
    clip_tower_files,
    save_safetensors,
)
from engine.device import DevicePolicy
from engine.loading import load_checkpoint, load_clip
from engine.model_management import ModelManager

FAM = Path(__file__).resolve().parents[1] / "fixtures" / "families"
DDPM_PREFIXES = ("alphas_cumprod", "betas", "log_one_minus", "posterior_", "sqrt_")


@pytest.fixture(scope="module")
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))


def shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def denoise(model: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 77, model.context_dim, generator=g)
    y = None
    if model.diffusion_model.config.adm_in_channels is not None:
        y = torch.randn(1, model.diffusion_model.config.adm_in_channels, generator=g)
    return model.apply_model(x, torch.tensor([2.0]), ctx, y=y)


@pytest.mark.parametrize("name,arch,predict", [
    ("tiny-sdxl", "stable-diffusion-xl-v1-base", "epsilon"),
    ("tiny-sdxl-refiner", "stable-diffusion-xl-v1-refiner", "epsilon"),
    ("tiny-sd21v", None, "v"),
])
def test_layout_metadata_and_round_trip(name: str, arch: str | None, predict: str, manager: ModelManager,
                                        tmp_path: Path) -> None:
    src = FAM / f"{name}.safetensors"
    model, clip, vae = load_checkpoint(src, manager)
    sd = checkpoint_state(model, clip, vae)
    want = {k: v for k, v in shapes(src).items() if not k.startswith(DDPM_PREFIXES)}
    if predict == "v":
        want["v_pred"] = [0]
    assert {k: list(v.shape) for k, v in sd.items()} == want
    meta = checkpoint_metadata(model, clip, "x 1", {"1": {}}, None)
    assert meta["modelspec.predict_key"] == predict
    if arch is None:
        assert not any(k.startswith("modelspec.a") for k in meta)
    else:
        assert meta["modelspec.architecture"] == arch and meta["modelspec.title"] == "x 1"
        assert meta["modelspec.sai_model_spec"] == "1.0.0" and meta["modelspec.implementation"] == "sgm"
    out = tmp_path / f"{name}-saved.safetensors"
    save_safetensors(out, sd, meta)
    model2, clip2, _ = load_checkpoint(out, manager)
    assert model2.family is model.family and model2.model_sampling.prediction == model.model_sampling.prediction
    assert torch.allclose(denoise(model2), denoise(model), atol=1e-5)
    assert clip2 is not None and clip is not None
    assert torch.allclose(clip2.encode("a cat")[0][0], clip.encode("a cat")[0][0], atol=1e-5)


def test_sdxl_clip_save_files_load_as_a_pair(manager: ModelManager, tmp_path: Path) -> None:
    _, clip, _ = load_checkpoint(FAM / "tiny-sdxl.safetensors", manager, output_vae=False)
    assert clip is not None
    paths = []
    for tower, sd, extra in clip_tower_files(clip):
        assert all(k.startswith(("text_model.", "text_projection.", "logit_scale")) for k in sd), tower
        assert "loom_config" in extra and "text_encoder" in json.loads(extra["loom_config"])
        paths.append(tmp_path / f"{tower}.safetensors")
        save_safetensors(paths[-1], sd, extra)
    assert [p.stem for p in paths] == ["clip_l", "clip_g"]
    loaded = load_clip(paths, "sdxl", manager=manager)
    assert torch.allclose(loaded.encode("a cat")[0][0], clip.encode("a cat")[0][0], atol=1e-5)
    pooled = loaded.encode("a cat")[0][1]["pooled_output"]
    assert torch.allclose(pooled, clip.encode("a cat")[0][1]["pooled_output"], atol=1e-5)


@pytest.mark.parametrize("name,arch", [("tiny-flux1-dev", None), ("tiny-sd35m", "stable-diffusion-v3-medium")])
def test_flow_model_unet_save_round_trip(name: str, arch: str | None, manager: ModelManager, tmp_path: Path) -> None:
    from engine.checkpoint_save import unet_state_dict
    from engine.loading import load_unet

    model = load_unet(FAM.parent / "families2" / f"{name}.safetensors", manager)
    meta = checkpoint_metadata(model, None, "x 1", None, None)
    assert meta.get("modelspec.architecture") == arch and "modelspec.predict_key" not in meta  # flow models
    out = tmp_path / "unet.safetensors"
    save_safetensors(out, unet_state_dict(model), meta)
    back = load_unet(out, manager)
    assert back.family is model.family
    a, b = model.patched_state_dict(), back.patched_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_prediction_keys_follow_comfyui_model_type(manager: ModelManager) -> None:
    """ComfyUI takes predict_key / v_pred from the type the network was loaded with (a ModelSamplingDiscrete patch
    does not change it), ztsnr from the schedule in use for v models, and the EDM v sigma range when patched."""
    from engine.sampling.model_sampling import ModelSamplingDiscrete
    from engine.sampling.model_sampling_continuous import ModelSamplingContinuousEDM

    sd15 = load_checkpoint(FAM.parent / "tiny-sd15" / "tiny-sd15.safetensors", manager, output_clip=False,
                           output_vae=False)[0]
    patched = sd15.clone()
    patched.model_sampling = ModelSamplingDiscrete(prediction="v", zero_snr=True)
    meta = checkpoint_metadata(patched, None, "x 1", None, None)
    assert meta["modelspec.predict_key"] == "epsilon"
    assert not {"v_pred", "ztsnr"} & set(checkpoint_state(patched))
    edm = sd15.clone()
    edm.model_sampling = ModelSamplingContinuousEDM("v", 0.002, 120.0)
    keys = checkpoint_state(edm)
    assert float(keys["edm_vpred.sigma_max"]) == pytest.approx(120.0, rel=1e-5)
    assert float(keys["edm_vpred.sigma_min"]) == pytest.approx(0.002, rel=1e-4)
    v_model = load_checkpoint(FAM / "tiny-sd21v.safetensors", manager, output_clip=False, output_vae=False)[0]
    zsnr = v_model.clone()
    zsnr.model_sampling = ModelSamplingDiscrete(prediction="v", zero_snr=True)
    assert {"v_pred", "ztsnr"} <= set(checkpoint_state(zsnr))
    assert "ztsnr" not in checkpoint_state(v_model)
