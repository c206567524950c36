"""DiffControlNetLoader adds the weights the model runs with, LoRA patches included (ComfyUI adds the loaded,
patched model's state dict): checked against a ControlNet merged independently here (LoRA formula of the families
README written out, then diff + weight) and saved as a plain file."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_helpers import ADA, FIX, link_models, run_graph
from safetensors import safe_open
from safetensors.torch import save_file

V11 = "tiny-control_v11p_sd15_canny_fp16.safetensors"
LORA = "tiny-sd15-lora.safetensors"
DIFF, MERGED = "tiny-diff-control.safetensors", "tiny-merged-control.safetensors"
LORA_STRENGTH = 0.8
UNET = "model.diffusion_model."


def _read(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _lora_unet(strength: float) -> dict[str, torch.Tensor]:
    """tiny-sd15's UNet weights with the LoRA merged: W + s * (alpha / rank) * up @ down, in float32."""
    unet = {k[len(UNET):]: v.float() for k, v in _read(FIX / "tiny-sd15" / "tiny-sd15.safetensors").items()
            if k.startswith(UNET)}
    lora = _read(FIX / "families" / LORA)
    targets = json.loads((FIX / "families" / "tiny-sd15-lora.targets.json").read_text())
    for module, target in targets.items():
        name = target[len(UNET):]
        if not target.startswith(UNET) or f"{module}.lora_down.weight" not in lora:
            continue
        down, up = lora[f"{module}.lora_down.weight"].float(), lora[f"{module}.lora_up.weight"].float()
        alpha = float(lora[f"{module}.alpha"]) if f"{module}.alpha" in lora else down.shape[0]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(unet[name].shape) * (alpha / down.shape[0])
        unet[name] = unet[name] + strength * delta
    return unet


@pytest.fixture(scope="module")
def diff_rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, torch.Tensor]]]:
    from app.runner import build_runtime

    base = link_models(tmp_path_factory.mktemp("diffcn"))
    (base / "models" / "loras").mkdir(parents=True, exist_ok=True)
    (base / "models" / "loras" / LORA).symlink_to(FIX / "families" / LORA)
    control = {k: v.float() for k, v in _read(ADA / V11).items()}
    plain = {k[len(UNET):]: v.float() for k, v in _read(FIX / "tiny-sd15" / "tiny-sd15.safetensors").items()
             if k.startswith(UNET)}
    shared = [k for k in control if k in plain and plain[k].shape == control[k].shape]
    assert len(shared) > 100
    # a diff ControlNet in the ControlNet 1.0 layout: stored weight = ControlNet - SD1.5 UNet
    diff = {"control_model." + k: (v - plain[k] if k in shared else v) for k, v in control.items()}
    diff["difference"] = torch.zeros(1)
    save_file(diff, str(base / "models" / "controlnet" / DIFF))
    merged_unet = _lora_unet(LORA_STRENGTH)
    merged = {k: (diff["control_model." + k] + merged_unet[k] if k in shared else v) for k, v in control.items()}
    save_file(merged, str(base / "models" / "controlnet" / MERGED))
    torch.set_num_threads(1)
    rt = build_runtime(base, cpu=True)
    yield rt, merged
    rt.close()


def _graph(loader: str, control: str, lora: bool) -> dict[str, Any]:
    model = ["30", 0] if lora else ["1", 0]
    g: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "30": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": LORA,
                                                               "strength_model": LORA_STRENGTH}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "hint_edges_128x64.png"}},
        "20": {"class_type": loader, "inputs": {"control_net_name": control}},
        "21": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["2", 0], "negative": ["3", 0], "control_net": ["20", 0], "image": ["10", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 11, "steps": 4, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["21", 0], "negative": ["21", 1], "latent_image": ["4", 0], "denoise": 1.0}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
    }
    if loader == "DiffControlNetLoader":
        g["20"]["inputs"]["model"] = model
    if not lora:
        del g["30"]
    return g


def _run(rt: Any, graph: dict[str, Any], name: str) -> tuple[np.ndarray, Any]:
    out = run_graph(rt, graph, name)
    assert out.status == "success", out.error and out.error.get("exception_message")
    return np.asarray(out.values["5"][0][0]["samples"].numpy()), out.values["20"][0][0]


def test_diff_controlnet_adds_the_lora_patched_weights(diff_rt: tuple[Any, dict[str, torch.Tensor]]) -> None:
    rt, merged = diff_rt
    # first without the LoRA, so a cache keyed on the network alone would hand the same ControlNet back below
    plain_latent, plain_cn = _run(rt, _graph("DiffControlNetLoader", DIFF, lora=False), "diff-plain")
    diff_latent, diff_cn = _run(rt, _graph("DiffControlNetLoader", DIFF, lora=True), "diff-lora")
    ref_latent, ref_cn = _run(rt, _graph("ControlNetLoader", MERGED, lora=True), "merged-lora")
    weights = diff_cn.module.state_dict()
    worst = max(float((weights[k].float() - v).abs().max() / v.abs().max().clamp_min(1e-12))
                for k, v in merged.items())
    assert worst < 1e-6, worst
    name = "input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight"  # a LoRA target inside the ControlNet
    assert not torch.allclose(plain_cn.module.state_dict()[name].float(), merged[name], rtol=1e-4, atol=0)
    scale = np.abs(ref_latent).max()
    assert np.abs(diff_latent - ref_latent).max() / scale < 1e-5
    assert np.abs(plain_latent - ref_latent).max() / scale > 1e-4  # without the LoRA the result differs
