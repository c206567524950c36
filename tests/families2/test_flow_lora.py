"""LoRA on the flow transformers, in the key layouts ComfyUI accepts (kohya ``lora_unet_*``, diffusers
``transformer.*`` with PEFT lora_A / lora_B, OneTrainer ``lora_transformer_*``, ``diffusion_model.*``): LoRAs built
here; the patched weights equal the merged weights computed here from an explicit name table (q/k/v row thirds,
Flux's proj_mlp rows, the swapped halves of diffusers' norm_out), and LoraLoaderModelOnly runs through the nodes."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2

RANK = 4
H_FLUX, H_SD3 = 64, 128

# module -> (parameter, first row, row count or None = all, swap halves); written out by hand from the layouts
FLUX_CASES: dict[str, tuple[str, int, int | None, bool]] = {
    "lora_unet_double_blocks_0_img_attn_qkv": ("double_blocks.0.img_attn.qkv.weight", 0, None, False),
    "lora_unet_single_blocks_2_linear2": ("single_blocks.2.linear2.weight", 0, None, False),
    "transformer.transformer_blocks.1.attn.to_k": ("double_blocks.1.img_attn.qkv.weight", H_FLUX, H_FLUX, False),
    "transformer.transformer_blocks.1.attn.to_q": ("double_blocks.1.img_attn.qkv.weight", 0, H_FLUX, False),
    "transformer.transformer_blocks.1.attn.add_v_proj": ("double_blocks.1.txt_attn.qkv.weight", 2 * H_FLUX, H_FLUX,
                                                         False),
    "transformer.transformer_blocks.0.norm1_context.linear": ("double_blocks.0.txt_mod.lin.weight", 0, None, False),
    "transformer.single_transformer_blocks.1.proj_mlp": ("single_blocks.1.linear1.weight", 3 * H_FLUX, 4 * H_FLUX,
                                                         False),
    "lora_transformer_single_transformer_blocks_3_attn_to_v": ("single_blocks.3.linear1.weight", 2 * H_FLUX, H_FLUX,
                                                               False),
    "transformer.norm_out.linear": ("final_layer.adaLN_modulation.1.weight", 0, None, True),
    "diffusion_model.single_blocks.0.linear1_qkv": ("single_blocks.0.linear1.weight", 0, 3 * H_FLUX, False),
}
SD3_CASES: dict[str, tuple[str, int, int | None, bool]] = {
    "lora_unet_joint_blocks_0_x_block_attn_proj": ("joint_blocks.0.x_block.attn.proj.weight", 0, None, False),
    "transformer.transformer_blocks.1.attn.to_k": ("joint_blocks.1.x_block.attn.qkv.weight", H_SD3, H_SD3, False),
    "transformer.transformer_blocks.0.attn.add_v_proj": ("joint_blocks.0.context_block.attn.qkv.weight", 2 * H_SD3,
                                                         H_SD3, False),
    "transformer.transformer_blocks.0.attn2.to_q": ("joint_blocks.0.x_block.attn2.qkv.weight", 0, H_SD3, False),
    "base_model.model.transformer_blocks.1.ff.net.0.proj": ("joint_blocks.1.x_block.mlp.fc1.weight", 0, None, False),
    "transformer.transformer_blocks.0.norm1_context.linear": ("joint_blocks.0.context_block.adaLN_modulation.1.weight",
                                                              0, None, False),
    # the last joint block's context modulation and norm_out are stored (scale, shift) by diffusers
    "transformer.transformer_blocks.1.norm1_context.linear": ("joint_blocks.1.context_block.adaLN_modulation.1.weight",
                                                              0, None, True),
    "transformer.norm_out.linear": ("final_layer.adaLN_modulation.1.weight", 0, None, True),
    "lora_transformer_pos_embed_proj": ("x_embedder.proj.weight", 0, None, False),
}


def _make_lora(net: Any, cases: dict[str, tuple[str, int, int | None, bool]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = dict(net.named_parameters())
    sd: dict[str, torch.Tensor] = {}
    for i, (module, (param, _, rows, _)) in enumerate(cases.items()):
        shape = params[param].shape
        out_rows = rows if rows is not None else shape[0]
        down = torch.randn(RANK, *shape[1:], generator=g) * 0.1
        up = torch.randn(out_rows, RANK, *([1] * (len(shape) - 2)), generator=g) * 0.1
        peft = module.startswith(("transformer.", "base_model."))
        sd[module + (".lora_A.weight" if peft else ".lora_down.weight")] = down.to(torch.float16)
        sd[module + (".lora_B.weight" if peft else ".lora_up.weight")] = up.to(torch.float16)
        if i % 2 == 0:
            sd[module + ".alpha"] = torch.tensor(2.0)
    return sd


def _expected(net: Any, sd: dict[str, torch.Tensor], cases: dict[str, tuple[str, int, int | None, bool]],
              strength: float) -> dict[str, torch.Tensor]:
    params = dict(net.named_parameters())
    deltas: dict[str, torch.Tensor] = {}
    for module, (param, first, _rows, swap) in cases.items():
        peft = module + ".lora_A.weight" in sd
        down = sd[module + (".lora_A.weight" if peft else ".lora_down.weight")].float()
        up = sd[module + (".lora_B.weight" if peft else ".lora_up.weight")].float()
        alpha = float(sd[module + ".alpha"]) / RANK if module + ".alpha" in sd else 1.0
        w = params[param]
        delta = (alpha * (up.flatten(1) @ down.flatten(1))).reshape(-1, *w.shape[1:])
        if swap:
            delta = torch.cat(delta.chunk(2, dim=0)[::-1], dim=0)
        full = deltas.setdefault(param, torch.zeros(w.shape))
        full[first:first + delta.shape[0]] += delta
    return {p: (params[p].detach().float() + strength * d).to(params[p].dtype) for p, d in deltas.items()}


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint, load_unet
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    manager = ModelManager(DevicePolicy.cpu())
    return {"flux": load_unet(FAM2 / "tiny-flux1-dev.safetensors", manager),
            "sd3": load_checkpoint(FAM2 / "tiny-sd35m.safetensors", manager)[0]}


@pytest.mark.parametrize("key,cases", [("flux", FLUX_CASES), ("sd3", SD3_CASES)])
def test_patched_weights_equal_independent_merge(models: dict[str, Any], key: str, cases: Any) -> None:
    from engine.lora import apply_lora_with_report

    model = models[key]
    net = model.diffusion_model
    sd = _make_lora(net, cases, seed=7)
    patched, _, report = apply_lora_with_report(model, None, sd, 0.8, 1.0)
    assert report["unet_modules_patched"] == len(cases) and not report["unmatched_keys"], report
    weights = patched._patched_weights(net)
    expected = _expected(net, sd, cases, 0.8)
    assert set(weights) == set(expected)
    for name, w in expected.items():
        assert weights[name].dtype == dict(net.named_parameters())[name].dtype
        assert torch.equal(weights[name], w), name
    assert not model.patches  # the input handle carries no patch


def test_lora_of_the_other_family_is_refused(models: dict[str, Any]) -> None:
    from engine.lora import apply_lora_with_report

    sd = _make_lora(models["sd3"].diffusion_model, SD3_CASES, seed=1)
    with pytest.raises(ValueError, match="none of this model's diffusion-model layers"):
        apply_lora_with_report(models["flux"], None, {k: v for k, v in sd.items() if k.startswith("lora_unet")},
                               1.0, 1.0)


def test_lora_loader_model_only_through_nodes(models: dict[str, Any], run2: Any, models2_base: Path) -> None:
    from safetensors.torch import save_file

    sd = _make_lora(models["flux"].diffusion_model, FLUX_CASES, seed=3)
    folder = models2_base / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "tiny-flux-lora.safetensors"))
    case = "comfy__flux_dev__txt2img__euler__simple__128x128"
    graph = copy.deepcopy(json.loads((GOLDEN2 / f"{case}.json").read_text())["graph"])
    graph["30"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["40", 0], "strength_model": 1.0,
                                                                    "lora_name": "tiny-flux-lora.safetensors"}}
    graph["20"]["inputs"]["model"] = ["30", 0]
    golden = np.load(GOLDEN2 / f"{case}.latent.npy")
    with_lora = run2(graph, "lora")
    assert with_lora.status == "success", with_lora.error
    assert np.abs(with_lora.values["5"][0][0]["samples"].numpy() - golden).max() > 1e-3
    graph["30"]["inputs"]["strength_model"] = 0.0
    off = run2(graph, "lora0")
    assert np.abs(off.values["5"][0][0]["samples"].numpy() - golden).max() / np.abs(golden).max() < 1e-5


CLIP_CASES = {
    "sd3": {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
            ("clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", 0, None, False),
            "lora_te2_text_model_encoder_layers_5_mlp_fc1":
            ("clip_g.transformer.text_model.encoder.layers.5.mlp.fc1.weight", 0, None, False),
            "lora_te3_encoder_block_1_layer_1_DenseReluDense_wi_0":
            ("t5xxl.transformer.encoder.block.1.layer.1.DenseReluDense.wi_0.weight", 0, None, False)},
    "flux": {"lora_te1_text_model_encoder_layers_2_mlp_fc2":
             ("clip_l.transformer.text_model.encoder.layers.2.mlp.fc2.weight", 0, None, False),
             "lora_te2_encoder_block_0_layer_0_SelfAttention_q":
             ("t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight", 0, None, False),
             "lora_te3_encoder_block_3_layer_0_SelfAttention_o":
             ("t5xxl.transformer.encoder.block.3.layer.0.SelfAttention.o.weight", 0, None, False)},
}


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_text_encoder_lora_on_flow_clips(kind: str) -> None:
    """OneTrainer-style te1 (CLIP-L), te2 (SD3's CLIP-G in HF names; Flux's T5) and te3 (T5) modules."""
    from engine.device import DevicePolicy
    from engine.loading import load_clip
    from engine.lora import apply_lora_with_report
    from engine.model_management import ModelManager

    files = ["clip_l", "clip_g", "t5xxl_fp16"] if kind == "sd3" else ["clip_l", "t5xxl_fp16"]
    clip = load_clip([FAM2 / f"tiny-{n}.safetensors" for n in files], kind,
                     manager=ModelManager(DevicePolicy.cpu()))
    sd = _make_lora(clip.encoders, CLIP_CASES[kind], seed=11)
    _, patched, report = apply_lora_with_report(None, clip, sd, 1.0, 0.7)
    assert report["clip_modules_patched"] == 3 and not report["unmatched_keys"], report
    weights = patched._patched_weights(clip.encoders)
    for name, w in _expected(clip.encoders, sd, CLIP_CASES[kind], 0.7).items():
        assert torch.equal(weights[name], w), name
    tokens = clip.tokenize("a red cube")
    assert not torch.equal(patched.encode_from_tokens(tokens), clip.encode_from_tokens(tokens))
