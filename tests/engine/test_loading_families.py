"""SD2.1-v, SDXL base and SDXL refiner tiny checkpoints: detection, text towers, ADM, v-prediction,
and a 20-step Euler run that reproduces ComfyUI's golden latents (own loop, so only the networks and the
denoiser rule are under test)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.detect import detect
from engine.device import DevicePolicy
from engine.handles import ClipHandle, ModelHandle
from engine.loading import load_checkpoint, load_unet
from engine.model_management import ModelManager
from engine.state_files import read_shapes, read_state_dict

FAMILY_FILES = {"tiny-sd21v": "sd20", "tiny-sdxl": "sdxl", "tiny-sdxl-refiner": "sdxl_refiner"}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.cpu())


@pytest.mark.parametrize("name", sorted(FAMILY_FILES))
def test_detection_matches_config(name: str, fixtures_dir: Path) -> None:
    sd, meta = read_state_dict(fixtures_dir / f"families/{name}.safetensors")
    cfg = detect(read_shapes(sd), meta, sd.__getitem__, source=name)
    expected = json.loads((fixtures_dir / f"families/{name}.config.json").read_text())["unet"]
    assert cfg.family.name == FAMILY_FILES[name]
    assert cfg.prediction == ("v" if name == "tiny-sd21v" else "eps")
    u = cfg.unet
    assert u is not None
    assert list(u.channel_mult) == expected["channel_mult"]
    assert list(u.num_res_blocks) == expected["num_res_blocks"]
    assert list(u.transformer_depth) == expected["transformer_depth"]
    assert list(u.transformer_depth_output) == expected["transformer_depth_output"]
    assert u.transformer_depth_middle == expected["transformer_depth_middle"]
    assert u.context_dim == expected["context_dim"] and u.use_linear_in_transformer
    assert u.adm_in_channels == expected["adm_in_channels"]
    assert u.num_head_channels == expected["num_head_channels"] == 16  # from metadata, not the family's 64


def test_v_rule_uses_norm_bias_std(fixtures_dir: Path) -> None:
    sd, meta = read_state_dict(fixtures_dir / "families/tiny-sd21v.safetensors")
    key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    flat = dict(sd)
    flat[key] = torch.full_like(sd[key], 0.3)  # std 0 -> eps
    assert detect(read_shapes(flat), meta, flat.__getitem__).prediction == "eps"
    assert detect(read_shapes(sd), meta, sd.__getitem__, prediction="eps").prediction == "eps"  # override


def _euler(model: ModelHandle, noise: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
           uncond: torch.Tensor, cfg: float, y: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    x = noise * torch.sqrt(1 + sigmas[0] ** 2)
    yy = None if y is None else torch.cat(y)
    for i in range(len(sigmas) - 1):
        d = model.apply_model(torch.cat([x, x]), sigmas[i].expand(2), torch.cat([cond, uncond]), y=yy)
        den = d[1:] + (d[:1] - d[1:]) * cfg
        x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return model.latent_format.process_out(x)


def _golden(fixtures_dir: Path, case: str) -> tuple[Path, dict]:
    stem = fixtures_dir / f"families/golden/comfy__{case}"
    return stem, json.loads(Path(f"{stem}.json").read_text())


def _encode(clip: ClipHandle, text: str) -> tuple[torch.Tensor, dict]:
    [[cond, extra]] = clip.encode(text)
    return cond, extra


@pytest.mark.parametrize("ckpt,case", [("tiny-sd21v", "sd21v__txt2img__euler__normal"),
                                       ("tiny-sdxl", "sdxl__txt2img__euler__normal")])
def test_golden_text_adm_sampling_and_decode(ckpt: str, case: str, fixtures_dir: Path,
                                             manager: ModelManager) -> None:
    torch.set_num_threads(1)
    model, clip, vae = load_checkpoint(fixtures_dir / f"families/{ckpt}.safetensors", manager)
    assert clip is not None and vae is not None
    stem, meta = _golden(fixtures_dir, case)
    graph = meta["graph"]
    cond, c_extra = _encode(clip, graph["2"]["inputs"]["text"])
    uncond, u_extra = _encode(clip, graph["3"]["inputs"]["text"])
    assert _rel(cond.numpy(), np.load(f"{stem}.cond.npy")) <= 1e-4
    assert _rel(uncond.numpy(), np.load(f"{stem}.uncond.npy")) <= 1e-4
    assert _rel(c_extra["pooled_output"].numpy(), np.load(f"{stem}.cond_pooled.npy")) <= 1e-4
    noise = torch.from_numpy(np.load(f"{stem}.noise.npy"))
    y = None
    if model.family.adm != "none":
        y_pos = model.adm(c_extra, noise.shape, "positive")
        y_neg = model.adm(u_extra, noise.shape, "negative")
        assert y_pos is not None and y_neg is not None
        assert _rel(y_pos.numpy(), np.load(f"{stem}.adm.node5.positive.npy")) <= 1e-5
        y = (y_pos, y_neg)
    else:
        assert model.adm(c_extra, noise.shape) is None
    sampler = graph["5"]["inputs"]
    latent = _euler(model, noise, torch.from_numpy(np.load(f"{stem}.sigmas.npy")), cond, uncond,
                    sampler["cfg"], y)
    assert _rel(latent.numpy(), np.load(f"{stem}.latent.npy")) <= 1e-4
    image = vae.decode(torch.from_numpy(np.load(f"{stem}.latent.npy")))
    assert np.abs(image.numpy() - np.load(f"{stem}.image.npy")).max() <= 1e-4


def test_sdxl_explicit_size_adm(fixtures_dir: Path, manager: ModelManager) -> None:
    model, clip, _ = load_checkpoint(fixtures_dir / "families/tiny-sdxl.safetensors", manager)
    assert clip is not None
    stem, meta = _golden(fixtures_dir, "sdxl__clip_text_encode_sdxl__dpmpp_2m__karras")
    inputs = meta["graph"]["2"]["inputs"]
    tokens = clip.tokenize(inputs["text_g"])
    tokens["l"] = clip.tokenize(inputs["text_l"])["l"]
    extra = {k: inputs[k] for k in ("width", "height", "crop_w", "crop_h", "target_width", "target_height")}
    [[cond, d]] = clip.encode_from_tokens_scheduled(tokens, add_dict=extra)
    assert _rel(cond.numpy(), np.load(f"{stem}.cond.npy")) <= 1e-4
    y = model.adm(d, (1, 4, 8, 16))
    # float32 sin/cos of arguments near 1000 agree to ~3e-5 absolute
    assert y is not None and _rel(y.numpy(), np.load(f"{stem}.adm.node5.positive.npy")) <= 1e-4


def test_refiner_loads_with_aesthetic_adm(fixtures_dir: Path, manager: ModelManager) -> None:
    model, clip, vae = load_checkpoint(fixtures_dir / "families/tiny-sdxl-refiner.safetensors", manager)
    assert clip is not None and vae is not None
    assert model.family.name == "sdxl_refiner" and model.latent_format.scale_factor == pytest.approx(0.13025)
    assert list(clip.tokenizers) == ["g"]
    cond, extra = _encode(clip, "a cat")
    assert cond.shape == (1, 77, 48) and extra["pooled_output"].shape == (1, 48)
    pos = model.adm(extra, (1, 4, 8, 8), "positive")
    neg = model.adm(extra, (1, 4, 8, 8), "negative")
    assert pos is not None and neg is not None and pos.shape == (1, 48 + 5 * 256)
    assert not torch.equal(pos, neg)  # aesthetic score 6.0 vs 2.5
    x = torch.randn(1, 4, 8, 8)
    out = model.apply_model(x, torch.tensor([1.0]), cond, y=pos)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_only_file_of_sdxl(fixtures_dir: Path, manager: ModelManager, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd, meta = read_state_dict(fixtures_dir / "families/tiny-sdxl.safetensors")
    prefix = "model.diffusion_model."
    path = tmp_path / "xl-unet.safetensors"
    save_file({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, str(path), meta)
    model = load_unet(path, manager)
    assert model.family.name == "sdxl" and model.diffusion_model.config.adm_in_channels == 1584
    assert next(model.diffusion_model.parameters()).dtype == torch.float32  # fp16 file, fp32 on CPU
