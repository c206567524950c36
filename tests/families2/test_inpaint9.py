"""The 9-channel SD1.5 inpainting layout: detection (SD1.x / SD2.x / SDXL layouts) and ComfyUI's goldens for
InpaintModelConditioning and VAEEncodeForInpaint posted through the real nodes and the executor."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from families2_support import GOLDEN2, rel_err

FIX = Path(__file__).resolve().parents[1] / "fixtures"
IMC = "comfy__sd15inpaint__imc_noise_mask_true__euler__normal"
VEFI = "comfy__sd15inpaint__vae_encode_for_inpaint_grow6__euler__normal"


def _shapes(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    from engine.safetensors_header import read_safetensors_header

    header = read_safetensors_header(path)
    return {k: list(v.shape) for k, v in header.tensors.items()}, dict(header.metadata)


def _as_inpaint(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    out = dict(shapes)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    out[key] = [out[key][0], 9, *out[key][2:]]
    return out


def test_detect_sd15_inpaint_file(models2_base: Path) -> None:
    from engine.detect import detect
    from engine.families import SD15

    shapes, meta = _shapes(models2_base / "models" / "checkpoints" / "tiny-sd15-inpaint.safetensors")
    cfg = detect(shapes, meta)
    assert cfg.family is SD15 and cfg.prediction == "eps"
    assert cfg.unet is not None and cfg.unet.in_channels == 9 and cfg.unet.out_channels == 4


@pytest.mark.parametrize("name,family", [("tiny-sd21v", "sd20"), ("tiny-sdxl", "sdxl")])
def test_detect_inpaint_layouts_of_other_families(name: str, family: str) -> None:
    """SD2 inpainting is always eps (the v rule does not apply to 9-channel files); SDXL inpaint stays SDXL."""
    from safetensors import safe_open

    from engine.detect import detect

    path = FIX / "families" / f"{name}.safetensors"
    shapes, meta = _shapes(path)
    with safe_open(str(path), "pt") as f:
        getter = f.get_tensor
        plain = detect(shapes, meta, get_tensor=getter)
        inpaint = detect(_as_inpaint(shapes), meta, get_tensor=getter)
    assert inpaint.family.name == family == plain.family.name
    assert inpaint.unet is not None and inpaint.unet.in_channels == 9
    assert inpaint.prediction == "eps"
    if name == "tiny-sd21v":
        assert plain.prediction == "v"  # the same tensors as a 4-channel file read as v: the rule is skipped


def _check_case(name: str, outcome: Any, runtime: Any, case: dict[str, Any]) -> dict[str, float]:
    from PIL import Image

    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"]
    image = outcome.values[str(case["image_node"])][0][0]
    errs = {"latent_rel": rel_err(latent.numpy(), np.load(GOLDEN2 / f"{name}.latent.npy")),
            "image_rel": rel_err(image.numpy(), np.load(GOLDEN2 / f"{name}.image.npy"))}
    saved = outcome.outputs[str(case["save_node"])]["images"][0]
    out_dir = Path(runtime.services.paths.output_dir)
    ours = np.asarray(Image.open(out_dir / saved["subfolder"] / saved["filename"]).convert("RGB"), dtype=np.int16)
    theirs = np.asarray(Image.open(GOLDEN2 / f"{name}.png").convert("RGB"), dtype=np.int16)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs)
    errs.update(png_max=float(diff.max()), png_mean=float(diff.mean() / 255.0))
    print(name, errs)
    assert errs["latent_rel"] < 5e-5 and errs["image_rel"] < 1e-4
    assert errs["png_max"] <= 2 and errs["png_mean"] <= 0.01
    return errs


@pytest.mark.parametrize("name", [IMC, VEFI])
def test_inpaint_golden_through_nodes(name: str, run2: Any, runtime2: Any) -> None:
    case = json.loads((GOLDEN2 / f"{name}.json").read_text())
    outcome = run2(case["graph"], name)
    _check_case(name, outcome, runtime2, case)
    if name == IMC:
        cond = outcome.values["13"][0][0][0][1]
        assert rel_err(cond["concat_latent_image"].numpy(),
                       np.load(GOLDEN2 / f"{name}.concat_latent_image.npy")) < 1e-4
        assert np.array_equal(cond["concat_mask"].numpy(), np.load(GOLDEN2 / f"{name}.concat_mask.npy"))
        latent = outcome.values["13"][2][0]
        assert np.array_equal(latent["noise_mask"].numpy(), np.load(GOLDEN2 / f"{name}.concat_mask.npy"))
    else:
        assert "concat_latent_image" not in outcome.values["2"][0][0][0][1]


def test_inpaint_model_conditioning_noise_mask_off(run2: Any) -> None:
    """noise_mask false: the latent carries no noise mask, the concat is unchanged, the whole latent is resampled."""
    case = json.loads((GOLDEN2 / f"{IMC}.json").read_text())
    graph = copy.deepcopy(case["graph"])
    graph["13"]["inputs"]["noise_mask"] = False
    graph["5"]["inputs"]["steps"] = 4
    graph["7"]["inputs"]["filename_prefix"] = "imc_off"
    on = copy.deepcopy(graph)
    on["13"]["inputs"]["noise_mask"] = True
    on["7"]["inputs"]["filename_prefix"] = "imc_on"
    off_out, on_out = run2(graph, "imc_off"), run2(on, "imc_on")
    assert off_out.status == "success" and on_out.status == "success"
    latent_off = off_out.values["13"][2][0]
    assert "noise_mask" not in latent_off
    cond = off_out.values["13"][0][0][0][1]
    assert rel_err(cond["concat_latent_image"].numpy(), np.load(GOLDEN2 / f"{IMC}.concat_latent_image.npy")) < 1e-4
    mask = np.load(GOLDEN2 / f"{IMC}.concat_mask.npy")  # [1, 1, 64, 128]
    enc = latent_off["samples"].numpy()
    s_off = off_out.values["5"][0][0]["samples"].numpy()
    s_on = on_out.values["5"][0][0]["samples"].numpy()
    keep = mask[0, 0, ::8, ::8] == 0  # latent cells fully outside the mask
    assert keep.any()
    # with the noise mask the kept cells stay the encoded image; without it they are resampled too
    assert np.abs(s_on[..., keep] - enc[..., keep]).max() < 1e-4
    assert np.abs(s_off[..., keep] - enc[..., keep]).max() > 1e-2


def test_detect_full_size_sd15_inpainting_layout() -> None:
    """The sd-v1-5-inpainting key/shape set (UNet built on the meta device with 9 input channels, plus the
    SD1.5 CLIP-L and VAE) detects as SD1.5, eps, 9 channels, with the public widths."""
    from dataclasses import replace

    import torch

    from engine.detect import detect
    from engine.families import SD15
    from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder
    from engine.networks.unet import UNetConfig, UNetModel
    from engine.networks.vae import AutoencoderKL, VAEConfig

    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for prefix, module in (("model.diffusion_model.", UNetModel(replace(UNetConfig(), in_channels=9))),
                               ("first_stage_model.", AutoencoderKL(VAEConfig())),
                               ("cond_stage_model.", ClipTextEncoder(ClipTextConfig()))):
            shapes.update({prefix + k: tuple(v.shape) for k, v in module.state_dict().items()})
    cfg = detect(shapes)
    assert cfg.family is SD15 and cfg.prediction == "eps"
    assert cfg.unet is not None
    assert (cfg.unet.in_channels, cfg.unet.model_channels, cfg.unet.context_dim) == (9, 320, 768)
    assert set(cfg.text) == {"l"}
