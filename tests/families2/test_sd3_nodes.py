"""The shared SD3.5-medium golden cases through the real nodes: the all-in-one checkpoint (CheckpointLoaderSimple)
and the split files (CheckpointLoaderSimple without text encoders + TripleCLIPLoader), which must give the same
latent bit for bit; the MMDiT-X network against ComfyUI's latent from the golden conditioning; CLIPTextEncodeSD3."""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2, rel_err

AIO = "comfy__sd35m__txt2img__euler__sgm_uniform__shift3"
SPLIT = "comfy__sd35m__triple_clip_loader__euler__sgm_uniform__shift3"
_latents: dict[str, Any] = {}


def test_mmdit_detection_and_dtype() -> None:
    from engine.detect_flow import detect_mmdit
    from engine.safetensors_header import read_safetensors_header

    shapes = read_safetensors_header(FAM2 / "tiny-sd35m.safetensors").shapes()
    family, cfg = detect_mmdit(shapes, "model.diffusion_model.")
    real = json.loads((FAM2 / "tiny-sd35m.config.json").read_text())["mmdit"]
    assert family.name == "sd35" and family.shift == 3.0 and family.multiplier == 1000.0
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.pos_embed_max) == (
        real["depth"], real["hidden_size"], real["num_heads"], real["pos_embed_max_size"])
    assert list(cfg.x_self_attn_layers) == real["x_block_self_attn_layers"] and cfg.qk_norm
    assert (cfg.context_dim, cfg.adm_in_channels) == (real["context_in"], real["adm_in"])


def test_mmdit_full_size_layouts() -> None:
    """SD3.5 medium (depth 24, attn2 in 0-12, pos 384) and large (depth 38, no attn2, pos 192) from key sets."""
    from engine.detect_flow import detect_mmdit

    def layout(depth: int, attn2: range, pos: int) -> dict[str, tuple[int, ...]]:
        h = 64 * depth
        shapes: dict[str, tuple[int, ...]] = {"x_embedder.proj.weight": (h, 16, 2, 2), "pos_embed": (1, pos * pos, h),
                                              "context_embedder.weight": (h, 4096),
                                              "y_embedder.mlp.0.weight": (h, 2048)}
        for i in range(depth):
            shapes[f"joint_blocks.{i}.x_block.mlp.fc1.weight"] = (4 * h, h)
            shapes[f"joint_blocks.{i}.x_block.attn.ln_q.weight"] = (64,)
            if i in attn2:
                shapes[f"joint_blocks.{i}.x_block.attn2.qkv.weight"] = (3 * h, h)
        return shapes

    _, medium = detect_mmdit(layout(24, range(13), 384))
    assert (medium.hidden_size, medium.num_heads, medium.x_self_attn_layers) == (1536, 24, tuple(range(13)))
    _, large = detect_mmdit(layout(38, range(0), 192))
    assert (large.hidden_size, large.num_heads, large.x_self_attn_layers, large.pos_embed_max) == (2432, 38, (), 192)


def test_mmdit_golden_latent_from_golden_cond() -> None:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager
    from engine.sampling.ksampler import sample

    torch.set_num_threads(1)
    model, clip, _ = load_checkpoint(FAM2 / "tiny-sd35m.safetensors", ModelManager(DevicePolicy.cpu()))
    assert clip is None  # the file holds no text encoders
    mats = [p for p in model.diffusion_model.parameters() if p.ndim >= 2 and p.numel() > 1]
    assert {p.dtype for p in mats if p.shape[0] != 1} == {torch.float16}  # fp16 file kept as it is
    load = lambda suffix: torch.from_numpy(np.load(GOLDEN2 / f"{AIO}.{suffix}.npy"))  # noqa: E731
    pos = [[load("cond"), {"pooled_output": load("cond_pooled")}]]
    neg = [[load("uncond"), {"pooled_output": load("uncond_pooled")}]]
    out = sample(model, load("noise"), 20, 4.5, "euler", "sgm_uniform", pos, neg, torch.zeros(1, 16, 16, 16))
    err = rel_err(out.numpy(), np.load(GOLDEN2 / f"{AIO}.latent.npy"))
    print(AIO, "network latent_rel", err)
    assert err < 1e-5


@pytest.mark.parametrize("name", [AIO, SPLIT])
def test_sd3_golden_through_nodes(name: str, run2: Any, runtime2: Any) -> None:
    from PIL import Image

    case = json.loads((GOLDEN2 / f"{name}.json").read_text())
    outcome = run2(case["graph"], name)
    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"]
    errs = {"latent_rel": rel_err(latent.numpy(), np.load(GOLDEN2 / f"{name}.latent.npy")),
            "cond_rel": rel_err(outcome.values["2"][0][0][0][0].numpy(), np.load(GOLDEN2 / f"{name}.cond.npy")),
            "pooled_rel": rel_err(outcome.values["2"][0][0][0][1]["pooled_output"].numpy(),
                                  np.load(GOLDEN2 / f"{name}.cond_pooled.npy"))}
    saved = outcome.outputs[str(case["save_node"])]["images"][0]
    out_dir = runtime2.services.paths.output_dir
    ours = np.asarray(Image.open(f"{out_dir}/{saved['subfolder']}/{saved['filename']}").convert("RGB"), np.int16)
    diff = np.abs(ours - np.asarray(Image.open(GOLDEN2 / f"{name}.png").convert("RGB"), dtype=np.int16))
    errs.update(png_max=float(diff.max()), png_mean=float(diff.mean() / 255.0))
    print(name, errs)
    assert errs["latent_rel"] < 1e-5 and errs["png_max"] <= 2 and errs["png_mean"] <= 0.01
    _latents[name] = latent


def test_sd3_split_equals_all_in_one() -> None:
    if len(_latents) < 2:
        pytest.skip("needs both golden cases of this module to have run")
    assert bool((_latents[AIO] == _latents[SPLIT]).all())


def test_clip_text_encode_sd3_empty_t5(run2: Any) -> None:
    """empty_padding none: an empty t5xxl field encodes as the end token alone (77 + 1 tokens)."""
    graph = copy.deepcopy(json.loads((GOLDEN2 / f"{SPLIT}.json").read_text())["graph"])
    clip = graph["3"]["inputs"]["clip"]
    graph["3"] = {"class_type": "CLIPTextEncodeSD3", "inputs": {"clip": clip, "clip_l": "blurry", "clip_g": "blurry",
                                                                "t5xxl": "", "empty_padding": "none"}}
    graph["5"]["inputs"]["steps"] = 2
    graph["7"]["inputs"]["filename_prefix"] = "sd3enc"
    out = run2(graph, "sd3enc")
    assert out.status == "success", out.error
    assert tuple(out.values["3"][0][0][0][0].shape) == (1, 78, 80)
