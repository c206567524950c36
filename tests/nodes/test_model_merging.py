"""ModelMerge* / CLIPMerge* on two tiny SD1.5 checkpoints: catalogue entries, the weights each merge produces
(computed here independently from the files' tensors), laziness, and composition with LoRA and other merges."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
LORA = FIX / "families" / "tiny-sd15-lora.safetensors"
UNET = "model.diffusion_model."
CLIP = "cond_stage_model."
# a few UNet weights, one per ModelMergeBlocks prefix class, and two text-encoder weights
PROBES = ["time_embed.0.weight", "input_blocks.1.1.proj_in.weight", "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
          "output_blocks.4.0.in_layers.2.weight", "out.2.bias"]
CLIP_PROBES = ["clip_l.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight",
               "clip_l.transformer.text_model.final_layer_norm.bias"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tiny-sd15 (A) and a copy whose UNet and text-encoder floats are moved by seeded noise (B), both on disk."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(SD15), "pt") as f:
        a = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata() or {})
    g = torch.Generator().manual_seed(11)
    b = {k: (v + 0.05 * torch.randn(v.shape, generator=g)) if k.startswith((UNET, CLIP)) and v.is_floating_point()
         else v for k, v in a.items()}
    path = tmp_path_factory.mktemp("merge") / "tiny-sd15-other.safetensors"
    save_file(b, str(path), metadata=meta)
    return {"A": a, "B": b, "path_B": path}


@pytest.fixture(scope="module")
def handles(files: dict[str, Any]) -> dict[str, Any]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    a = load_checkpoint(SD15, manager, output_vae=False)
    b = load_checkpoint(files["path_B"], manager, output_vae=False)
    return {"model_a": a[0], "clip_a": a[1], "model_b": b[0], "clip_b": b[1]}


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def unet_weight(model: Any, name: str) -> torch.Tensor:
    return model.patched_state_dict()[name]


def file_unet(files: dict[str, Any], which: str, name: str) -> torch.Tensor:
    return files[which][UNET + name]


def file_clip(files: dict[str, Any], which: str, name: str) -> torch.Tensor:
    return files[which][CLIP + name.removeprefix("clip_l.")]


def test_catalogue_entries(registry: Any) -> None:
    info = registry.object_info()
    ratio = ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]
    multiplier = ["FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}]
    assert info["ModelMergeSimple"]["input"]["required"] == {"model1": ["MODEL"], "model2": ["MODEL"], "ratio": ratio}
    assert info["ModelMergeSubtract"]["input"]["required"]["multiplier"] == multiplier
    assert list(info["ModelMergeBlocks"]["input"]["required"]) == ["model1", "model2", "input", "middle", "out"]
    assert info["CLIPMergeSimple"]["input"]["required"] == {"clip1": ["CLIP"], "clip2": ["CLIP"], "ratio": ratio}
    assert info["CLIPMergeAdd"]["output"] == ["CLIP"] and info["ModelMergeAdd"]["output"] == ["MODEL"]
    for name in ("ModelMergeSimple", "ModelMergeBlocks", "ModelMergeSubtract", "ModelMergeAdd", "CLIPMergeSimple",
                 "CLIPMergeSubtract", "CLIPMergeAdd"):
        assert info[name]["category"] == "advanced/model_merging", name
    sd1 = list(info["ModelMergeSD1"]["input"]["required"])
    assert sd1[:4] == ["model1", "model2", "time_embed.", "label_emb."] and len(sd1) == 2 + 2 + 12 + 3 + 12 + 1
    assert "input_blocks.11." in sd1 and sd1[-1] == "out."
    assert info["ModelMergeSD2"]["input"] == info["ModelMergeSD1"]["input"]
    sdxl = list(info["ModelMergeSDXL"]["input"]["required"])
    assert "input_blocks.8" in sdxl and "middle_block.2" in sdxl and "input_blocks.9" not in sdxl
    assert len(sdxl) == 2 + 2 + 9 + 3 + 9 + 1
    for name in ("ModelMergeSD1", "ModelMergeSD2", "ModelMergeSDXL"):
        assert info[name]["category"] == "advanced/model_merging/model_specific"


def test_simple_ratio_one_and_zero_give_either_model(registry: Any, handles: dict[str, Any],
                                                     files: dict[str, Any]) -> None:
    a, b = handles["model_a"], handles["model_b"]
    keep_a = unet_weight(call(registry, "ModelMergeSimple", model1=a, model2=b, ratio=1.0)[0], PROBES[1])
    keep_b = call(registry, "ModelMergeSimple", model1=a, model2=b, ratio=0.0)[0].patched_state_dict()
    assert torch.equal(keep_a, file_unet(files, "A", PROBES[1]))
    for name in PROBES:
        assert torch.equal(keep_b[name], file_unet(files, "B", name)), name


def test_simple_add_subtract_mid_values(registry: Any, handles: dict[str, Any], files: dict[str, Any]) -> None:
    a, b = handles["model_a"], handles["model_b"]
    simple = call(registry, "ModelMergeSimple", model1=a, model2=b, ratio=0.3)[0].patched_state_dict()
    added = call(registry, "ModelMergeAdd", model1=a, model2=b)[0].patched_state_dict()
    diff = call(registry, "ModelMergeSubtract", model1=a, model2=b, multiplier=0.5)[0].patched_state_dict()
    for name in PROBES:
        wa, wb = file_unet(files, "A", name).double(), file_unet(files, "B", name).double()
        assert torch.allclose(simple[name].double(), 0.3 * wa + 0.7 * wb, atol=1e-6), name
        assert torch.allclose(added[name].double(), wa + wb, atol=1e-6), name
        assert torch.allclose(diff[name].double(), 0.5 * (wa - wb), atol=1e-6), name


def test_blocks_longest_prefix_and_first_ratio_default(registry: Any, handles: dict[str, Any],
                                                       files: dict[str, Any]) -> None:
    a, b = handles["model_a"], handles["model_b"]
    merged = call(registry, "ModelMergeBlocks", model1=a, model2=b, input=0.2, middle=0.7, out=0.5)[0]
    sd = merged.patched_state_dict()
    # time_embed matches no prefix -> the first ratio (input); output_blocks.* starts with "out"
    expect = dict(zip(PROBES, [0.2, 0.2, 0.7, 0.5, 0.5], strict=True))
    for name, r in expect.items():
        wa, wb = file_unet(files, "A", name).double(), file_unet(files, "B", name).double()
        assert torch.allclose(sd[name].double(), r * wa + (1 - r) * wb, atol=1e-6), name
    # "first" is the first ratio as the prompt lists them (ComfyUI passes inputs in prompt order)
    reordered = call(registry, "ModelMergeBlocks", model1=a, model2=b, middle=0.7, input=0.2, out=0.5)[0]
    wa, wb = file_unet(files, "A", PROBES[0]).double(), file_unet(files, "B", PROBES[0]).double()
    assert torch.allclose(unet_weight(reordered, PROBES[0]).double(), 0.7 * wa + 0.3 * wb, atol=1e-6)


def test_sd1_block_node_uses_its_block_prefixes(registry: Any, handles: dict[str, Any], files: dict[str, Any]) -> None:
    cls = registry.get("ModelMergeSD1")
    ratios = {name: 1.0 for name in cls.INPUT_TYPES()["required"] if name not in ("model1", "model2")}
    ratios["input_blocks.1."] = 0.25
    ratios["out."] = 0.0
    merged = getattr(cls(), cls.FUNCTION)(model1=handles["model_a"], model2=handles["model_b"], **ratios)[0]
    sd = merged.patched_state_dict()
    name = "input_blocks.1.1.proj_in.weight"
    wa, wb = file_unet(files, "A", name).double(), file_unet(files, "B", name).double()
    assert torch.allclose(sd[name].double(), 0.25 * wa + 0.75 * wb, atol=1e-6)
    assert torch.equal(sd["out.2.bias"], file_unet(files, "B", "out.2.bias"))
    # input_blocks.10. must not take input_blocks.1.'s ratio (the trailing dot)
    assert torch.equal(sd["input_blocks.10.0.in_layers.2.weight"], file_unet(files, "A", "input_blocks.10.0.in_layers.2.weight"))


def test_merge_is_lazy_and_leaves_inputs_alone(registry: Any, handles: dict[str, Any], files: dict[str, Any]) -> None:
    from engine.patching import HandleWeight

    a, b = handles["model_a"], handles["model_b"]
    merged = call(registry, "ModelMergeSimple", model1=a, model2=b, ratio=0.5)[0]
    assert merged is not a and merged.diffusion_model is a.diffusion_model  # no copy of the network
    assert a.patches == {} and b.patches == {}
    entries = merged.patches[PROBES[0]]
    assert len(entries) == 1 and isinstance(entries[0][1], HandleWeight) and entries[0][0::2] == (0.5, 0.5)
    assert len(merged.patches) == len(dict(a.diffusion_model.named_parameters()))
    assert torch.equal(dict(a.diffusion_model.named_parameters())[PROBES[0]], file_unet(files, "A", PROBES[0]))


def test_merges_compose_with_lora_and_each_other(registry: Any, handles: dict[str, Any], files: dict[str, Any]) -> None:
    from engine.lora import apply_lora, load_lora

    a, b = handles["model_a"], handles["model_b"]
    lora = load_lora(LORA)
    name = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"  # a weight the LoRA patches
    wa, wb = file_unet(files, "A", name).double(), file_unet(files, "B", name).double()
    lora_a = apply_lora(a, None, lora, 0.8, 0.0)[0]
    delta = unet_weight(lora_a, name).double() - wa
    assert delta.abs().max() > 1e-4
    # LoRA on model2 before the merge: model2's patched weight is what gets mixed in
    lora_b = apply_lora(b, None, lora, 0.8, 0.0)[0]
    m1 = call(registry, "ModelMergeSimple", model1=a, model2=lora_b, ratio=0.25)[0]
    assert torch.allclose(unet_weight(m1, name).double(), 0.25 * wa + 0.75 * (wb + delta), atol=1e-5)
    # LoRA on model1 before, then another LoRA after the merge (ComfyUI: strength_model scales earlier patches)
    m2 = call(registry, "ModelMergeSimple", model1=lora_a, model2=b, ratio=0.25)[0]
    assert torch.allclose(unet_weight(m2, name).double(), 0.25 * (wa + delta) + 0.75 * wb, atol=1e-5)
    m3 = apply_lora(m2, None, lora, 0.8, 0.0)[0]
    assert torch.allclose(unet_weight(m3, name).double(), 0.25 * (wa + delta) + 0.75 * wb + delta, atol=1e-5)
    # add difference: A + (B - A) * 1 == B; a merge of a merge
    d = call(registry, "ModelMergeSubtract", model1=b, model2=a, multiplier=1.0)[0]
    back = call(registry, "ModelMergeAdd", model1=a, model2=d)[0]
    assert torch.allclose(unet_weight(back, name).double(), wb, atol=1e-5)


def test_clip_merges(registry: Any, handles: dict[str, Any], files: dict[str, Any]) -> None:
    ca, cb = handles["clip_a"], handles["clip_b"]
    keep_a = call(registry, "CLIPMergeSimple", clip1=ca, clip2=cb, ratio=1.0)[0]
    keep_b = call(registry, "CLIPMergeSimple", clip1=ca, clip2=cb, ratio=0.0)[0]
    mid = call(registry, "CLIPMergeSimple", clip1=ca, clip2=cb, ratio=0.6)[0].patched_state_dict()
    added = call(registry, "CLIPMergeAdd", clip1=ca, clip2=cb)[0].patched_state_dict()
    diff = call(registry, "CLIPMergeSubtract", clip1=ca, clip2=cb, multiplier=2.0)[0].patched_state_dict()
    for name in CLIP_PROBES:
        wa, wb = file_clip(files, "A", name).double(), file_clip(files, "B", name).double()
        assert torch.equal(keep_a.patched_state_dict()[name], file_clip(files, "A", name))
        assert torch.equal(keep_b.patched_state_dict()[name], file_clip(files, "B", name))
        assert torch.allclose(mid[name].double(), 0.6 * wa + 0.4 * wb, atol=1e-6), name
        assert torch.allclose(added[name].double(), wa + wb, atol=1e-6), name
        assert torch.allclose(diff[name].double(), 2.0 * (wa - wb), atol=1e-6), name
    # the merged CLIP encodes as the clip it equals
    cond = keep_b.encode("a photo of a cat")[0][0]
    assert torch.allclose(cond, cb.encode("a photo of a cat")[0][0], atol=1e-5)
    assert not torch.allclose(cond, ca.encode("a photo of a cat")[0][0], atol=1e-3)


def test_clip_merge_keeps_clip1_settings(registry: Any, handles: dict[str, Any]) -> None:
    clip = handles["clip_a"].clone()
    clip.set_clip_skip(-2)
    merged = call(registry, "CLIPMergeSimple", clip1=clip, clip2=handles["clip_b"], ratio=0.5)[0]
    assert merged.layer_idx == -2 and handles["clip_a"].layer_idx is None


def test_merging_unlike_inputs_names_node_and_input(registry: Any, handles: dict[str, Any]) -> None:
    from nodes._base import NodeInputError

    with pytest.raises(NodeInputError, match=r"ModelMergeSimple.*'model2'.*ClipHandle"):
        call(registry, "ModelMergeSimple", model1=handles["model_a"], model2=handles["clip_b"], ratio=0.5)


def test_weight_of_another_shape_is_not_merged() -> None:
    from torch import nn

    from engine.patching import HandleWeight, apply_entries

    narrow, wide = nn.Linear(4, 3), nn.Linear(8, 3)
    w = wide.weight.detach().float()
    out = apply_entries(w, [(0.5, HandleWeight(narrow, "weight", ()), 0.5)])
    assert torch.equal(out, w * 0.5)  # ComfyUI: strength_model applies, the other weight is skipped
    same = nn.Linear(8, 3)
    out = apply_entries(w, [(0.25, HandleWeight(same, "weight", ()), 0.75)])
    assert torch.allclose(out, 0.75 * w + 0.25 * same.weight.detach())


def test_validation_sees_through_merges(registry: Any, services: Any) -> None:
    """A merge's result is of model1's (clip1's) family: the text-encoder check still finds the mismatch."""
    import os

    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    ck = Path(services.paths.get_folder_paths("checkpoints")[0])
    os.symlink(SD15, ck / "sd15.safetensors")
    os.symlink(FIX / "families" / "tiny-sdxl.safetensors", ck / "sdxl.safetensors")
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "3": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["1", 0], "ratio": 0.5}},
        "4": {"class_type": "CLIPMergeSimple", "inputs": {"clip1": ["2", 1], "clip2": ["2", 1], "ratio": 0.5}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 0]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["3", 0],
                                                   "positive": ["5", 0], "negative": ["5", 0],
                                                   "latent_image": ["6", 0]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
    }
    with pytest.raises(PromptValidationError) as info:
        validate_prompt(registry, prompt, extra_checks=builtin_checks(services))
    err = info.value.to_wire()["node_errors"]["7"]["errors"][0]
    assert err["type"] == "text_encoder_mismatch" and err["extra_info"]["input_name"] == "positive"
    assert "node #2 (CheckpointLoaderSimple 'sdxl.safetensors')" in err["details"]
    assert "node #1 (CheckpointLoaderSimple 'sd15.safetensors')" in err["details"]
