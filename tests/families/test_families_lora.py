"""LoRA through the real nodes: kohya SD1.x and SDXL files, 1x1 / 3x3 conv, alpha scaling, separate strengths,
shared base weights untouched, re-weighting without re-reading the checkpoint, executor caching, /history report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

FAM = Path(__file__).resolve().parents[1] / "fixtures" / "families"


def _call(runtime: Any, class_type: str, **inputs: Any) -> Any:
    cls = runtime.registry.get(class_type)
    return getattr(cls(), cls.COMFY_FUNCTION if hasattr(cls, "COMFY_FUNCTION") else cls.FUNCTION)(**inputs)


def _expected(lora: dict[str, torch.Tensor], module: str, w: torch.Tensor, strength: float) -> torch.Tensor:
    up, down = lora[module + ".lora_up.weight"].float(), lora[module + ".lora_down.weight"].float()
    scale = float(lora[module + ".alpha"]) / down.shape[0]
    return w.float() + strength * scale * (up.flatten(1) @ down.flatten(1)).reshape(w.shape)


@pytest.mark.parametrize("ckpt,lora_name,n_targets", [("tiny-sd15.safetensors", "tiny-sd15-lora.safetensors", 204),
                                                      ("tiny-sdxl.safetensors", "tiny-sdxl-lora.safetensors", 228)])
def test_every_module_patches_its_target(runtime: Any, ckpt: str, lora_name: str, n_targets: int) -> None:
    model, clip, _ = _call(runtime, "CheckpointLoaderSimple", ckpt_name=ckpt)
    base_w = {n: p.clone() for n, p in model.diffusion_model.named_parameters()}
    node_cls = runtime.registry.get("LoraLoader")
    node = node_cls()
    out = node.run_with_report(model=model, clip=clip, lora_name=lora_name, strength_model=0.7, strength_clip=0.3)
    new_model, new_clip = out["result"]
    report = out["ui"]["lora"][0]
    targets = json.loads((FAM / lora_name.replace(".safetensors", ".targets.json")).read_text())
    assert len(targets) == n_targets == report["modules_in_file"] == len(report["matched_keys"])
    assert report["unmatched_keys"] == [] and report["wrong_shape_keys"] == []
    assert report["unet_modules_patched"] + report["clip_modules_patched"] == n_targets
    lora = load_file(str(FAM / lora_name))
    unet_params = new_model._patched_weights(new_model.diffusion_model)
    for module, target in targets.items():
        if target.startswith("model.diffusion_model."):
            name = target[len("model.diffusion_model."):]
            want = _expected(lora, module, base_w[name], 0.7)
            assert torch.allclose(unet_params[name].float(), want, atol=1e-5), module
    # the shared base weights never change; the input handles carry no patches
    for n, p in model.diffusion_model.named_parameters():
        assert torch.equal(p, base_w[n])
    assert not model.patches and not clip.patches
    assert new_clip.patches and new_clip is not clip


def test_conv3x3_lora_and_alpha(runtime: Any, models_base: Path) -> None:
    model, _, _ = _call(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    w = dict(model.diffusion_model.named_parameters())["input_blocks.1.0.in_layers.2.weight"]  # 3x3 resnet conv
    g = torch.Generator().manual_seed(3)
    rank = 2
    lora = {"lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": torch.randn(rank, w.shape[1], 3, 3, generator=g),
            "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": torch.randn(w.shape[0], rank, 1, 1, generator=g),
            "lora_unet_down_blocks_0_resnets_0_conv1.alpha": torch.tensor(1.0)}
    save_file(lora, str(models_base / "models" / "loras" / "conv3x3.safetensors"))
    (patched,) = _call(runtime, "LoraLoaderModelOnly", model=model, lora_name="conv3x3.safetensors",
                       strength_model=1.5)
    got = patched._patched_weights(patched.diffusion_model)["input_blocks.1.0.in_layers.2.weight"]
    want = _expected(lora, "lora_unet_down_blocks_0_resnets_0_conv1", w, 1.5)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, w, atol=1e-3)


def test_separate_strengths(runtime: Any) -> None:
    model, clip, _ = _call(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    base = _call(runtime, "CLIPTextEncode", clip=clip, text="a photo of a cat")[0][0][0]
    m1, c1 = _call(runtime, "LoraLoader", model=model, clip=clip, lora_name="tiny-sd15-lora.safetensors",
                   strength_model=1.0, strength_clip=0.0)
    assert torch.equal(_call(runtime, "CLIPTextEncode", clip=c1, text="a photo of a cat")[0][0][0], base)
    m3, c3 = _call(runtime, "LoraLoader", model=model, clip=clip, lora_name="tiny-sd15-lora.safetensors",
                   strength_model=0.0, strength_clip=0.5)
    assert not torch.equal(_call(runtime, "CLIPTextEncode", clip=c3, text="a photo of a cat")[0][0][0], base)
    assert not m3._patched_weights(m3.diffusion_model) or all(
        torch.equal(v, dict(model.diffusion_model.named_parameters())[k])
        for k, v in m3._patched_weights(m3.diffusion_model).items())


def _lora_graph(strength: float) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                     "lora_name": "tiny-sd15-lora.safetensors",
                                                     "strength_model": strength, "strength_clip": strength}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["2", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 5, "steps": 2, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["3", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def test_reweighting_reuses_checkpoint_and_executor_caches(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.loading
    from executor import PromptExecutor, validate_prompt

    reads: list[str] = []
    real = engine.loading.read_state_dict

    def counting(path: Any) -> Any:
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(engine.loading, "read_state_dict", counting)
    ex = PromptExecutor(runtime.registry, keep_values=True)

    def run(strength: float, pid: str) -> Any:
        valid = validate_prompt(runtime.registry, _lora_graph(strength))
        out = ex.execute(valid.prompt, pid, {}, valid.outputs)
        assert out.status == "success", out.error
        return out

    first = run(1.0, "a")
    run(1.0, "a2")  # warm the checkpoint cache irrespective of earlier tests
    n_reads = len(reads)
    again = run(1.0, "b")
    assert again.executed == []  # same signatures: the patched handle and everything after it are reused
    assert len(first.outputs["2"]["lora"][0]["matched_keys"]) == 204
    half = run(0.5, "c")
    assert "2" in half.executed and "1" not in half.executed
    assert len(reads) == n_reads  # re-weighting read no checkpoint again
    a = first.values["5"][0][0]["samples"]
    b = half.values["5"][0][0]["samples"]
    assert not torch.allclose(a, b)
    report = half.outputs["2"]["lora"][0]
    assert report["strength_model"] == 0.5 and report["unet_modules_patched"] > 0


def test_sd2_kohya_lora_on_linear_proj_and_fused_openclip(runtime: Any, models_base: Path) -> None:
    """Hand-picked kohya SD2 names: linear proj_in, mid-block attn2, OpenCLIP-H fused q/k/v rows, c_fc."""
    model, clip, _ = _call(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd21v.safetensors")
    unet_w = dict(model.diffusion_model.named_parameters())
    clip_w = dict(clip.encoders.named_parameters())
    width = clip_w["clip_h.ln_final.weight"].shape[0]
    targets: dict[str, tuple[str, slice | None]] = {
        "lora_unet_down_blocks_0_attentions_0_proj_in": ("input_blocks.1.1.proj_in.weight", None),
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k":
            ("middle_block.1.transformer_blocks.0.attn2.to_k.weight", None),
        "lora_te_text_model_encoder_layers_1_self_attn_k_proj":
            ("clip_h.transformer.resblocks.1.attn.in_proj_weight", slice(width, 2 * width)),
        "lora_te_text_model_encoder_layers_1_self_attn_v_proj":
            ("clip_h.transformer.resblocks.1.attn.in_proj_weight", slice(2 * width, 3 * width)),
        "lora_te_text_model_encoder_layers_0_mlp_fc1": ("clip_h.transformer.resblocks.0.mlp.c_fc.weight", None),
    }
    g = torch.Generator().manual_seed(9)
    lora: dict[str, torch.Tensor] = {}
    for module, (param, rows) in targets.items():
        w = (unet_w if module.startswith("lora_unet") else clip_w)[param]
        out = w.shape[0] if rows is None else rows.stop - rows.start
        lora[module + ".lora_down.weight"] = torch.randn(3, w.shape[1], generator=g)
        lora[module + ".lora_up.weight"] = torch.randn(out, 3, generator=g)
        lora[module + ".alpha"] = torch.tensor(1.5)
    save_file(lora, str(models_base / "models" / "loras" / "sd2-hand.safetensors"))
    out = runtime.registry.get("LoraLoader")().run_with_report(
        model=model, clip=clip, lora_name="sd2-hand.safetensors", strength_model=0.8, strength_clip=1.2)
    new_model, new_clip = out["result"]
    assert out["ui"]["lora"][0]["unmatched_keys"] == [] and len(out["ui"]["lora"][0]["matched_keys"]) == 5
    unet_p = new_model._patched_weights(new_model.diffusion_model)
    clip_p = new_clip._patched_weights(new_clip.encoders)
    fused = "clip_h.transformer.resblocks.1.attn.in_proj_weight"
    want_fused = clip_w[fused].detach().float().clone()
    for module, (param, rows) in targets.items():
        if module.startswith("lora_unet"):
            assert torch.allclose(unet_p[param], _expected(lora, module, unet_w[param], 0.8), atol=1e-5)
        elif rows is None:
            assert torch.allclose(clip_p[param], _expected(lora, module, clip_w[param], 1.2), atol=1e-5)
        else:
            want_fused[rows] = _expected(lora, module, clip_w[param][rows], 1.2)
    assert torch.allclose(clip_p[fused], want_fused, atol=1e-5)
    assert torch.equal(clip_p[fused][:width], clip_w[fused][:width])  # the q third is untouched


async def test_lora_report_lands_in_history(aiohttp_client: Any, models_base: Path) -> None:
    import asyncio

    from app.config import Config
    from app.loom import build_loom
    from server import create_app

    graph = _lora_graph(0.9)
    loom = build_loom(Config(base_directory=models_base, cpu=True, user_directory=models_base / "user-history"))
    try:
        client = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False))
        resp = await client.post("/prompt", json={"prompt": graph, "client_id": "t"})
        assert resp.status == 200, await resp.text()
        prompt_id = (await resp.json())["prompt_id"]
        entry: dict[str, Any] = {}
        for _ in range(600):  # up to 60 s on a loaded machine
            entry = (await (await client.get(f"/history/{prompt_id}")).json()).get(prompt_id, {})
            if entry.get("status", {}).get("completed") or entry.get("status", {}).get("status_str") == "error":
                break
            await asyncio.sleep(0.1)
        assert entry.get("status", {}).get("status_str") == "success", entry.get("status")
        report = entry["outputs"]["2"]["lora"][0]
        assert report["lora_name"] == "tiny-sd15-lora.safetensors" and report["strength_model"] == 0.9
        assert len(report["matched_keys"]) == 204 and report["unet_modules_patched"] > 0
        assert report["clip_modules_patched"] > 0 and report["unmatched_keys"] == []
    finally:
        loom.close()
