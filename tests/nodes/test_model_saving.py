"""CheckpointSave / ModelSave / CLIPSave / VAESave on the tiny SD1.5 checkpoint with a LoRA: where the files go,
their keys and metadata (ComfyUI's layout), and that each loads back through Loom's loaders with the same numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
LORA = FIX / "families" / "tiny-sd15-lora.safetensors"
PROMPT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}}}
EXTRA = {"workflow": {"nodes": [], "links": []}}
DDPM = {"alphas_cumprod", "alphas_cumprod_prev", "betas", "log_one_minus_alphas_cumprod",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
        "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod"}


@pytest.fixture(scope="module")
def manager() -> Any:
    from engine.device import DevicePolicy
    from engine.model_management import ModelManager

    return ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))


@pytest.fixture(scope="module")
def handles(manager: Any) -> dict[str, Any]:
    """tiny-sd15 with the tiny LoRA (0.8 / 0.6), as the catalogue's round-trip case."""
    from engine.loading import load_checkpoint
    from engine.lora import apply_lora, load_lora

    model, clip, vae = load_checkpoint(SD15, manager)
    model, clip = apply_lora(model, clip, load_lora(LORA), 0.8, 0.6)
    return {"model": model, "clip": clip, "vae": vae}


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def denoise(model: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    return model.apply_model(x, torch.tensor([2.0]), ctx)


def test_catalogue_entries(registry: Any) -> None:
    info = registry.object_info()
    hidden = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    c = info["CheckpointSave"]
    assert c["display_name"] == "Save Checkpoint" and c["output_node"] is True and c["output"] == []
    assert c["input"]["required"] == {"model": ["MODEL"], "clip": ["CLIP"], "vae": ["VAE"],
                                      "filename_prefix": ["STRING", {"default": "checkpoints/ComfyUI"}]}
    defaults = {"ModelSave": "diffusion_models/ComfyUI", "CLIPSave": "clip/ComfyUI", "VAESave": "vae/ComfyUI_vae"}
    for name, default in defaults.items():
        assert info[name]["input"]["required"]["filename_prefix"] == ["STRING", {"default": default}], name
    for name in ("CheckpointSave", *defaults):
        assert info[name]["input"]["hidden"] == hidden and info[name]["category"] == "advanced/model_merging", name


def test_checkpoint_save_layout_counter_metadata(registry: Any, services: Any, handles: dict[str, Any]) -> None:
    out = Path(services.paths.output_dir)
    for _ in range(2):
        assert call(registry, "CheckpointSave", **handles, filename_prefix="checkpoints/rt", prompt=PROMPT,
                    extra_pnginfo=EXTRA) == {}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["rt_00001_.safetensors", "rt_00002_.safetensors"]
    sd, meta = read(out / "checkpoints" / "rt_00001_.safetensors")
    original, _ = read(SD15)
    assert set(sd) == set(original) - DDPM - {"cond_stage_model.transformer.text_model.embeddings.position_ids"}
    assert {t.dtype for t in sd.values()} == {torch.float32}
    assert set(meta) == {"modelspec.predict_key", "prompt", "workflow", "loom_config"}
    assert meta["modelspec.predict_key"] == "epsilon"
    assert json.loads(meta["prompt"]) == PROMPT and json.loads(meta["workflow"]) == EXTRA["workflow"]
    assert json.loads(meta["loom_config"])["clip"] == {"num_attention_heads": 2}
    # LoRA baked in: the file holds the handles' patched weights, not the base ones
    unet = handles["model"].patched_state_dict()
    key = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(sd["model.diffusion_model." + key], unet[key])
    assert not torch.equal(sd["model.diffusion_model." + key], original["model.diffusion_model." + key])
    clip_key = "transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(sd["cond_stage_model." + clip_key], handles["clip"].patched_state_dict()["clip_l." + clip_key])
    assert not torch.equal(sd["cond_stage_model." + clip_key], original["cond_stage_model." + clip_key])


def test_disable_metadata_keeps_only_model_facts(registry: Any, services: Any, handles: dict[str, Any]) -> None:
    services.disable_metadata = True
    call(registry, "CheckpointSave", **handles, filename_prefix="checkpoints/quiet", prompt=PROMPT, extra_pnginfo=EXTRA)
    call(registry, "VAESave", vae=handles["vae"], filename_prefix="vae/quiet", prompt=PROMPT)
    _, meta = read(Path(services.paths.output_dir) / "checkpoints" / "quiet_00001_.safetensors")
    assert set(meta) == {"modelspec.predict_key", "loom_config"}
    assert read(Path(services.paths.output_dir) / "vae" / "quiet_00001_.safetensors")[1] == {}


def test_checkpoint_loads_back_with_same_numbers(registry: Any, services: Any, handles: dict[str, Any],
                                                 manager: Any) -> None:
    from engine.loading import load_checkpoint

    call(registry, "CheckpointSave", **handles, filename_prefix="checkpoints/rt", prompt=None)
    model, clip, vae = load_checkpoint(Path(services.paths.output_dir) / "checkpoints" / "rt_00001_.safetensors", manager)
    assert model.patches == {} and clip is not None and vae is not None
    assert torch.allclose(denoise(model), denoise(handles["model"]), atol=1e-5)
    text = "a photo of a cat"
    assert torch.allclose(clip.encode(text)[0][0], handles["clip"].encode(text)[0][0], atol=1e-5)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(vae.decode(z), handles["vae"].decode(z))


def test_model_save_unet_only(registry: Any, services: Any, handles: dict[str, Any], manager: Any) -> None:
    from engine.loading import load_unet

    call(registry, "ModelSave", model=handles["model"], filename_prefix="diffusion_models/ComfyUI", prompt=PROMPT)
    path = Path(services.paths.output_dir) / "diffusion_models" / "ComfyUI_00001_.safetensors"
    sd, meta = read(path)
    assert len(sd) == 686 and all(k.startswith("model.diffusion_model.") for k in sd)
    assert set(meta) == {"modelspec.predict_key", "prompt"}  # standard UNet heads: no Loom config needed
    assert torch.allclose(denoise(load_unet(path, manager)), denoise(handles["model"]), atol=1e-5)


def test_clip_save_one_file_per_tower(registry: Any, services: Any, handles: dict[str, Any], manager: Any) -> None:
    from engine.loading import load_clip

    call(registry, "CLIPSave", clip=handles["clip"], filename_prefix="clip/ComfyUI", prompt=PROMPT)
    files = sorted((Path(services.paths.output_dir) / "clip").iterdir())
    assert [p.name for p in files] == ["ComfyUI_clip_l_00001_.safetensors"]
    sd, meta = read(files[0])
    assert set(sd) - {"logit_scale"} == {k.removeprefix("clip_l.transformer.")
                                         for k in handles["clip"].patched_state_dict()}
    assert all(k.startswith("text_model.") for k in set(sd) - {"logit_scale"}) and len(sd) == 37
    assert meta["format"] == "pt" and json.loads(meta["prompt"]) == PROMPT
    loaded = load_clip(files[0], "stable_diffusion", manager=manager)
    text = "a photo of a cat"
    assert torch.allclose(loaded.encode(text)[0][0], handles["clip"].encode(text)[0][0], atol=1e-5)


def test_vae_save_plain_keys(registry: Any, services: Any, handles: dict[str, Any], manager: Any) -> None:
    from engine.loading import load_vae

    call(registry, "VAESave", vae=handles["vae"], filename_prefix="vae/ComfyUI_vae", prompt=PROMPT)
    path = Path(services.paths.output_dir) / "vae" / "ComfyUI_vae_00001_.safetensors"
    sd, meta = read(path)
    original, _ = read(SD15)
    assert set(sd) == {k.removeprefix("first_stage_model.") for k in original if k.startswith("first_stage_model.")}
    assert set(meta) == {"prompt"}
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(load_vae(path, manager).decode(z), handles["vae"].decode(z))


def test_prefix_outside_output_is_refused(registry: Any, handles: dict[str, Any]) -> None:
    from nodes._base import NodeInputError

    with pytest.raises(NodeInputError, match="VAESave.*'filename_prefix'.*outside the output folder"):
        call(registry, "VAESave", vae=handles["vae"], filename_prefix="../escape")


def test_block_merge_and_saves_through_the_executor(registry: Any, services: Any) -> None:
    """Dotted ratio input names (ModelMergeSD1) validate and reach the node; the executor hands the prompt and
    extra_pnginfo to ModelSave / CLIPSave / VAESave, which write them as metadata."""
    import os

    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    ck = Path(services.paths.get_folder_paths("checkpoints")[0])
    os.symlink(SD15, ck / "sd15.safetensors")
    ratios = {name: 0.5 for name in registry.get("ModelMergeSD1").INPUT_TYPES()["required"]
              if name not in ("model1", "model2")}
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "ModelMergeSD1", "inputs": {"model1": ["1", 0], "model2": ["1", 0], **ratios}},
        "3": {"class_type": "ModelSave", "inputs": {"model": ["2", 0], "filename_prefix": "diffusion_models/m"}},
        "4": {"class_type": "CLIPSave", "inputs": {"clip": ["1", 1], "filename_prefix": "clip/c"}},
        "5": {"class_type": "VAESave", "inputs": {"vae": ["1", 2], "filename_prefix": "vae/v"}},
    }
    valid = validate_prompt(registry, prompt, extra_checks=builtin_checks(services))
    outcome = PromptExecutor(registry).execute(valid.prompt, "p1", {"extra_pnginfo": EXTRA}, valid.outputs)
    assert outcome.status == "success", outcome.error
    out = Path(services.paths.output_dir)
    for rel in ("diffusion_models/m_00001_.safetensors", "clip/c_clip_l_00001_.safetensors", "vae/v_00001_.safetensors"):
        sd, meta = read(out / rel)
        assert json.loads(meta["prompt"]) == prompt and json.loads(meta["workflow"]) == EXTRA["workflow"], rel
    unet, _ = read(out / "diffusion_models/m_00001_.safetensors")
    original, _ = read(SD15)
    key = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    assert torch.allclose(unet[key], original[key], atol=1e-6)  # a model merged with itself is itself
