"""comfy.diffusers_convert / comfy.diffusers_load (WAS Node Suite imports them) on
real tensors: the tiny-sd15 checkpoint in diffusers names converts back to its own single-file tensors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors import safe_open

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
SD21 = FIX / "families" / "tiny-sd21v.safetensors"
KEYMAP = FIX / "catalogue" / "tiny-sd15-diffusers.keymap.json"


@pytest.fixture
def shims(packs):
    packs.load("good_pack")
    return packs


def _read(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


def test_convert_vae_state_dict_gives_back_the_single_file_vae(shims) -> None:
    import comfy.diffusers_convert as dc

    single = _read(SD15, "first_stage_model.")
    # diffusers' own converter's names for these tensors (tests/fixtures/catalogue/README.md)
    entries = json.loads(KEYMAP.read_text())["keys"]["vae"]
    diffusers = {dk: (single[lk.removeprefix("first_stage_model.")].flatten(1) if op == "squeeze"
                      else single[lk.removeprefix("first_stage_model.")]) for dk, (lk, op) in entries.items()}
    assert any(t.ndim == 2 for t in diffusers.values()), "mid-block attention stored as linears"
    diffusers["encoder.extra_buffer"] = torch.ones(2)
    out = dc.convert_vae_state_dict(diffusers)
    assert torch.equal(out.pop("encoder.extra_buffer"), torch.ones(2)), "unknown names pass through, as in ComfyUI"
    assert out.keys() == single.keys()
    assert all(torch.equal(out[k], single[k]) for k in single)
    assert dc.reshape_weight_for_sd(torch.ones(3, 3), conv3d=True).shape == (3, 3, 1, 1, 1)


def test_convert_text_enc_v20_round_trips_an_open_clip_tower(shims) -> None:
    import comfy.diffusers_convert as dc

    from engine.checkpoint_save import _open_clip_to_hf

    prefix = "cond_stage_model.model."
    tower = {k: v for k, v in _read(SD21, prefix).items() if k != "logit_scale"}
    hf = {prefix + "transformer." + k: v for k, v in _open_clip_to_hf(tower).items()}
    hf[prefix + "transformer.text_model.embeddings.position_ids"] = torch.arange(4)[None]
    hf[prefix + "logit_scale"] = torch.ones(())
    hf["first_stage_model.other"] = torch.zeros(1)
    out = dc.convert_text_enc_state_dict_v20(hf, prefix)
    assert torch.equal(out.pop(prefix + "transformer.text_model.embeddings.position_ids"), torch.arange(4)[None])
    assert torch.equal(out.pop(prefix + "logit_scale"), torch.ones(())), "other keys under the prefix stay"
    assert out.keys() == {prefix + k for k in tower}, "keys outside the prefix are dropped"
    assert all(torch.equal(out[prefix + k], tower[k]) for k in tower)
    assert dc.convert_text_enc_state_dict(hf) is hf
    no_projection = {k: v for k, v in hf.items() if not k.endswith("text_projection.weight")}
    assert prefix + "text_projection" not in dc.convert_text_enc_state_dict_v20(no_projection, prefix)
    del hf[prefix + "transformer.text_model.encoder.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(ValueError, match=r"incomplete: .*layers\.1\.self_attn\.k_proj\.bias is missing"):
        dc.convert_text_enc_state_dict_v20(hf, prefix)
    parts = [torch.randn(2, 3), torch.randn(1, 3)]
    assert torch.equal(dc.cat_tensors(parts), torch.cat(parts))


def _catalogue_derive() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "extra_loaders" / "catalogue_derive.py"
    spec = importlib.util.spec_from_file_location("catalogue_derive_for_shims", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_diffusers_gives_the_single_file_networks(shims, tmp_path) -> None:
    import comfy.diffusers_convert
    import comfy.diffusers_load
    import comfy.model_management
    import comfy.sd

    folder = _catalogue_derive().make_diffusers(tmp_path)
    assert comfy.diffusers_load.first_file(folder / "unet", ["nothing.bin", "diffusion_pytorch_model.safetensors"]) \
        == str(folder / "unet" / "diffusion_pytorch_model.safetensors")
    model, clip, vae = comfy.diffusers_load.load_diffusers(str(folder), output_vae=True, output_clip=True)
    single, single_clip, single_vae, _ = comfy.sd.load_checkpoint_guess_config(str(SD15))
    assert model.diffusion_model.config == single.diffusion_model.config
    ours, theirs = model.diffusion_model.state_dict(), single.diffusion_model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert clip is not None and vae is not None
    assert comfy.diffusers_convert.load_diffusers(str(folder), fp16=comfy.model_management.should_use_fp16(),
                                                  output_vae=False, output_clip=False)[1:] == (None, None)
    with pytest.raises(ValueError, match="per-call dtype is not supported"):
        comfy.diffusers_convert.load_diffusers(str(folder), fp16=not comfy.model_management.should_use_fp16())


def test_load_checkpoint_with_config_applies_parameterization_and_layer(shims, tmp_path) -> None:
    import comfy.sd

    config = tmp_path / "v1-inference.yaml"
    config.write_text("model:\n  params:\n    cond_stage_config:\n      target: x\n")
    model, clip, vae = comfy.sd.load_checkpoint(str(config), str(SD15), embedding_directory=[str(tmp_path)])
    assert model.model_sampling.prediction == "eps" and clip.layer_idx is None and vae is not None
    v_config = {"model": {"params": {"parameterization": "v", "cond_stage_config": {"params": {"layer_idx": -2}}}}}
    model, clip, _ = comfy.sd.load_checkpoint(ckpt_path=str(SD15), output_vae=False, config=v_config)
    assert model.model_sampling.prediction == "v" and clip.layer_idx == -2
    with pytest.raises(ValueError, match="state_dict argument is not supported"):
        comfy.sd.load_checkpoint(str(config), state_dict={})


def test_torch_device_name(shims) -> None:
    import comfy.model_management as mm

    assert mm.get_torch_device_name(torch.device("cpu")) == "cpu"
    if torch.cuda.is_available():
        name = mm.get_torch_device_name(torch.device("cuda", 0))
        assert name.startswith("cuda:0 " + torch.cuda.get_device_name(0) + " : ")
