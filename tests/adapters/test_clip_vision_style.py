"""CLIP vision (preprocess, the three outputs, OpenCLIP layout, config rule) and the style model, against the
style golden case run through the real nodes."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_helpers import ADA, GOLDEN, golden_png, saved_png

from engine.adapters.clip_vision import ClipVisionConfig, clip_vision_config, load_clip_vision, openclip_to_hf
from engine.device import DevicePolicy
from engine.errors import UnknownModelError
from engine.model_management import ModelManager

NAME = "style__clip_vision_center_s1.0__euler__normal"
CLIP = "tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"


def _case() -> dict[str, Any]:
    return json.loads((GOLDEN / f"comfy__{NAME}.json").read_text())


def test_style_golden_through_the_nodes(run: Any, runtime: Any, rel: Any) -> None:
    case = _case()
    outcome = run(case["graph"], NAME)
    assert outcome.status == "success", outcome.error
    out = outcome.values["31"][0][0]
    for field in ("image_embeds", "penultimate_hidden_states", "last_hidden_state"):
        golden = np.load(GOLDEN / f"comfy__{NAME}.clip_vision.{field}.npy")
        assert rel(getattr(out, field).numpy(), golden) < 1e-5, field
        assert rel(out[field].numpy(), golden) < 1e-5  # item access, as packs use it
    assert outcome.reports["33"]["style"] == [{"file": "tiny-coadapter-style-sd15v1.safetensors", "strength": 1.0,
                                               "strength_type": "multiply", "tokens": 8}]
    positive = outcome.values["33"][0][0][0][0]
    assert tuple(positive.shape) == (1, 85, 32)
    assert rel(positive.numpy(), np.load(GOLDEN / f"comfy__{NAME}.positive.npy")) < 1e-5
    assert rel(outcome.values["5"][0][0]["samples"].numpy(), np.load(GOLDEN / f"comfy__{NAME}.latent.npy")) < 1e-4
    diff = np.abs(saved_png(runtime, outcome, "7") - golden_png(NAME))
    assert int(diff.max()) <= 2 and float(diff.mean()) <= 0.01


def test_attn_bias_only_adds_a_mask_that_sd15_ignores(run: Any) -> None:
    case = _case()
    graph = copy.deepcopy(case["graph"])
    graph["33"]["inputs"].update(strength=0.5, strength_type="attn_bias")
    half = copy.deepcopy(case["graph"])
    half["33"]["inputs"]["strength"] = 0.5
    a, b, c = run(case["graph"], "mul1"), run(graph, "bias"), run(half, "mul05")
    assert a.status == b.status == c.status == "success"
    assert "attention_mask" in b.values["33"][0][0][0][1]
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())
    assert not np.array_equal(a.values["5"][0][0]["samples"].numpy(), c.values["5"][0][0]["samples"].numpy())


def test_crop_none_stretches(run: Any) -> None:
    graph = copy.deepcopy(_case()["graph"])
    graph["31"]["inputs"]["crop"] = "none"
    centre = run(_case()["graph"], "c")
    stretched = run(graph, "n")
    a, b = centre.values["31"][0][0].image_embeds, stretched.values["31"][0][0].image_embeds
    assert a.shape == b.shape and not torch.equal(a, b)


def test_openclip_layout_gives_the_same_outputs(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    sd = load_file(str(ADA / CLIP))
    with safe_open(str(ADA / CLIP), "pt") as f:
        meta = f.metadata()
    hf = "vision_model."
    oc: dict[str, torch.Tensor] = {"visual.class_embedding": sd[hf + "embeddings.class_embedding"],
                                   "visual.conv1.weight": sd[hf + "embeddings.patch_embedding.weight"],
                                   "visual.positional_embedding": sd[hf + "embeddings.position_embedding.weight"],
                                   "visual.proj": sd["visual_projection.weight"].t().contiguous()}
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            oc[f"visual.{b}.{p}"] = sd[f"{hf}{a}.{p}"]
    for n in range(3):
        src, dst = f"{hf}encoder.layers.{n}.", f"visual.transformer.resblocks.{n}."
        for p in ("weight", "bias"):
            oc[f"{dst}attn.in_proj_{p}"] = torch.cat([sd[f"{src}self_attn.{x}_proj.{p}"] for x in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                oc[f"{dst}{b}.{p}"] = sd[f"{src}{a}.{p}"]
    assert set(openclip_to_hf(oc)) == set(sd) - {hf + "embeddings.position_ids"}
    path = tmp_path / "open_clip_vit_h.safetensors"
    save_file(oc, str(path), metadata=meta)
    manager = ModelManager(DevicePolicy.cpu())
    image = torch.rand(1, 96, 128, 3, generator=torch.Generator().manual_seed(0))
    a = load_clip_vision(path, manager).encode_image(image)
    b = load_clip_vision(ADA / CLIP, manager).encode_image(image)
    assert torch.allclose(a.image_embeds, b.image_embeds, atol=1e-6)
    assert torch.allclose(a.penultimate_hidden_states, b.penultimate_hidden_states, atol=1e-5)


def test_config_by_layer_count_for_real_files() -> None:
    def shapes(layers: int, width: int, positions: int) -> dict[str, tuple[int, ...]]:
        out = {f"vision_model.encoder.layers.{i}.layer_norm1.weight": (width,) for i in range(layers)}
        out["vision_model.embeddings.patch_embedding.weight"] = (width, 3, 14, 14)
        out["vision_model.embeddings.position_embedding.weight"] = (positions, width)
        return out

    h = clip_vision_config(shapes(32, 1280, 257), None, "h")
    assert (h.num_attention_heads, h.projection_dim, h.hidden_act, h.image_size) == (16, 1024, "gelu", 224)
    g = clip_vision_config(shapes(48, 1664, 257), None, "g")
    assert (g.hidden_size, g.projection_dim) == (1664, 1280)
    l336 = clip_vision_config(shapes(24, 1024, 577), None, "l")
    assert (l336.image_size, l336.hidden_act) == (336, "quick_gelu")
    with pytest.raises(UnknownModelError, match="12 layers"):
        clip_vision_config(shapes(12, 768, 50), None, "b16.safetensors")
    assert ClipVisionConfig().num_hidden_layers == 32


def test_unclip_conditioning_appends_entries_and_sd15_ignores_them(run: Any) -> None:
    case = _case()
    graph = copy.deepcopy(case["graph"])
    for node, source, strength, noise in (("33", "2", 0.7, 0.1), ("34", "33", 1.0, 0.0)):
        graph[node] = {"class_type": "unCLIPConditioning",
                       "inputs": {"conditioning": [source, 0], "clip_vision_output": ["31", 0], "strength": strength,
                                  "noise_augmentation": noise}}
    graph["5"]["inputs"]["positive"] = ["34", 0]
    plain = copy.deepcopy(case["graph"])
    plain["5"]["inputs"]["positive"] = ["2", 0]
    a, b = run(graph, "unclip"), run(plain, "no-unclip")
    assert a.status == b.status == "success", (a.error, b.error)
    entries = a.values["34"][0][0][0][1]["unclip_conditioning"]
    assert [e["strength"] for e in entries] == [0.7, 1.0] and entries[0]["noise_augmentation"] == 0.1
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())
