"""DiffusersLoader: a diffusers StableDiffusionPipeline folder of tiny-sd15 loads as the same networks, and gives
bit-identical pixels to CheckpointLoaderSimple on the single file."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from catalogue_derive import CAT, call  # type: ignore[import-not-found]


def test_key_conversion_matches_diffusers_own_converters() -> None:
    """unet_to_ldm / vae_to_ldm invert the key map that diffusers' convert_ldm_* functions made."""
    from engine.diffusers_names import unet_to_ldm, vae_to_ldm

    keymap = json.loads((CAT / "tiny-sd15-diffusers.keymap.json").read_text())
    for part, convert, prefix in (("unet", unet_to_ldm, "model.diffusion_model."), ("vae", vae_to_ldm, "first_stage_model.")):
        entries = keymap["keys"][part]
        sd = {dk: torch.full((3, 3) if op == "squeeze" else (1,), float(i)) for i, (dk, (_, op)) in enumerate(entries.items())}
        out = convert(sd)
        expected = {lk: float(i) for i, (lk, _) in enumerate(entries.values())}
        assert {prefix + k: float(v.flatten()[0]) for k, v in out.items()} == expected
        squeezed = [lk for lk, op in entries.values() if op == "squeeze"]
        assert all(out[k.removeprefix(prefix)].shape == (3, 3, 1, 1) for k in squeezed)
        assert len(squeezed) == (8 if part == "vae" else 0)  # q, k, v, proj_out of both mid-block attentions


def test_object_info_matches_comfyui(registry: Any) -> None:
    info = registry.object_info()["DiffusersLoader"]
    assert info["input"]["required"] == {"model_path": [["tiny-sd15-diffusers"]]}
    assert info["output"] == ["MODEL", "CLIP", "VAE"]
    assert info["category"] == "advanced/loaders/deprecated"


def test_folder_gives_the_same_pixels_as_the_single_file(registry: Any, one_thread: None) -> None:
    folder = call(registry, "DiffusersLoader", model_path="tiny-sd15-diffusers")
    single = call(registry, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    assert folder[0].diffusion_model.config == single[0].diffusion_model.config
    images = []
    for model, clip, vae in (folder, single):
        (pos,) = call(registry, "CLIPTextEncode", clip=clip, text="a photo of a cat")
        (neg,) = call(registry, "CLIPTextEncode", clip=clip, text="blurry, low quality")
        (latent,) = call(registry, "EmptyLatentImage", width=128, height=64, batch_size=1)
        (out,) = call(registry, "KSampler", model=model, seed=5, steps=3, cfg=7.0, sampler_name="euler",
                      scheduler="normal", positive=pos, negative=neg, latent_image=latent, denoise=1.0)
        (image,) = call(registry, "VAEDecode", vae=vae, samples=out)
        images.append(image)
    assert images[0].shape == (1, 64, 128, 3)
    assert torch.equal(images[0], images[1])


def test_missing_unet_names_node_input_and_folder(registry: Any, derived: dict[str, Path], tmp_path: Path) -> None:
    from nodes._base import NodeInputError

    broken = tmp_path / "broken"
    shutil.copytree(derived["diffusers"], broken, ignore=shutil.ignore_patterns("*.safetensors"))
    loader = registry.get("DiffusersLoader")
    root = loader.services.paths.get_folder_paths("diffusers")[0]
    os.symlink(broken, os.path.join(root, "broken"))
    with pytest.raises(NodeInputError, match=r"DiffusersLoader.*model_path.*no UNet weights"):
        call(registry, "DiffusersLoader", model_path="broken")
