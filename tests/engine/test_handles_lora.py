"""LoRA on MODEL / CLIP handles: key maps against the fixtures' target lists, ComfyUI's golden run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.device import DevicePolicy
from engine.handles import ModelHandle
from engine.loading import load_checkpoint
from engine.lora import apply_lora, clip_lora_names, load_lora, unet_lora_names
from engine.model_management import ModelManager

_PREFIX = {"model.diffusion_model.": "", "cond_stage_model.transformer.": "clip_l.transformer.",
           "conditioner.embedders.0.transformer.": "clip_l.transformer.",
           "conditioner.embedders.1.model.": "clip_g."}


def _ours(target: str) -> tuple[str, int | None]:
    m = re.match(r"(.*)\[(\d)/3\]$", target)
    third = int(m.group(2)) if m else None
    target = m.group(1) if m else target
    for theirs, mine in _PREFIX.items():
        if target.startswith(theirs):
            return mine + target[len(theirs):], third
    raise AssertionError(target)


@pytest.fixture(scope="module")
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.cpu())


@pytest.mark.parametrize("base,lora", [("tiny-sd15/tiny-sd15", "families/tiny-sd15-lora"),
                                       ("families/tiny-sdxl", "families/tiny-sdxl-lora")])
def test_every_lora_module_maps_to_its_target(base: str, lora: str, fixtures_dir: Path,
                                              manager: ModelManager) -> None:
    model, clip, _ = load_checkpoint(fixtures_dir / f"{base}.safetensors", manager, output_vae=False)
    assert clip is not None
    targets = json.loads((fixtures_dir / f"{lora}.targets.json").read_text())
    names = {**unet_lora_names(model), **clip_lora_names(clip)}
    for module, target in targets.items():
        param, rows = names[module]
        expected, third = _ours(target)
        assert param == expected, module
        if third is None:
            assert rows is None
        else:
            width = rows.stop - rows.start  # type: ignore[union-attr]
            assert (rows.start, rows.stop) == (third * width, (third + 1) * width)  # type: ignore[union-attr]


def test_patch_formula_and_base_untouched(fixtures_dir: Path, manager: ModelManager) -> None:
    model, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", manager, output_vae=False)
    sd = load_lora(fixtures_dir / "families/tiny-sd15-lora.safetensors")
    new_model, new_clip = apply_lora(model, clip, sd, 0.7, 1.0)
    assert isinstance(new_model, ModelHandle) and model.patches == {}
    key = "input_blocks.1.1.proj_in.weight"  # a 1x1 conv: 4-D weight
    base = dict(model.diffusion_model.named_parameters())[key].detach()
    m = "lora_unet_down_blocks_0_attentions_0_proj_in"
    up, down, alpha = sd[f"{m}.lora_up.weight"], sd[f"{m}.lora_down.weight"], float(sd[f"{m}.alpha"])
    expected = base + 0.7 * (alpha / down.shape[0]) * (up.float().flatten(1) @ down.float().flatten(1)).reshape(
        base.shape)
    got = new_model._patched_weights(new_model.diffusion_model)[key]
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.equal(dict(model.diffusion_model.named_parameters())[key], base)


def test_golden_lora_run(fixtures_dir: Path, manager: ModelManager) -> None:
    torch.set_num_threads(1)
    model, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", manager, output_vae=False)
    stem = fixtures_dir / "families/golden/comfy__sd15__lora__m1.0_c1.0__euler__normal"
    graph = json.loads(Path(f"{stem}.json").read_text())["graph"]
    lmodel, lclip = apply_lora(model, clip, load_lora(fixtures_dir / "families/tiny-sd15-lora.safetensors"), 1.0, 1.0)
    [[cond, extra]] = lclip.encode(graph["2"]["inputs"]["text"])
    [[uncond, _]] = lclip.encode(graph["3"]["inputs"]["text"])
    ref = np.load(f"{stem}.cond.npy")
    assert np.abs(cond.numpy() - ref).max() / np.abs(ref).max() <= 1e-4
    noise = torch.from_numpy(np.load(f"{stem}.noise.npy"))
    sigmas = torch.from_numpy(np.load(f"{stem}.sigmas.npy"))
    x = noise * torch.sqrt(1 + sigmas[0] ** 2)
    for i in range(len(sigmas) - 1):
        d = lmodel.apply_model(torch.cat([x, x]), sigmas[i].expand(2), torch.cat([cond, uncond]))
        den = d[1:] + (d[:1] - d[1:]) * 7.5
        x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    latent = lmodel.latent_format.process_out(x).numpy()
    ref_latent = np.load(f"{stem}.latent.npy")
    assert np.abs(latent - ref_latent).max() / np.abs(ref_latent).max() <= 1e-4


def test_model_only_and_wrong_family(fixtures_dir: Path, manager: ModelManager) -> None:
    model, _, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", manager, output_clip=False,
                                  output_vae=False)
    new_model, new_clip = apply_lora(model, None, load_lora(fixtures_dir / "families/tiny-sd15-lora.safetensors"),
                                     1.0, 1.0)
    assert new_clip is None and new_model is not None and len(new_model.patches) > 100
    with pytest.raises(ValueError, match="different model family"):
        apply_lora(model, None, {"lora_unet_nothing_here.lora_down.weight": torch.zeros(1, 1),
                                 "lora_unet_nothing_here.lora_up.weight": torch.zeros(1, 1)}, 1.0, 1.0)
