"""Stand-alone loaders through the real nodes: CLIPLoader (sd2, stable_diffusion), DualCLIPLoader (sdxl),
UNETLoader (models/unet), VAELoader; text-encoder files in the HF layout (fused q/k/v split, projection
transposed) give exactly the checkpoint's conditioning, and the SDXL golden reproduces from split files."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FAM = Path(__file__).resolve().parents[1] / "fixtures" / "families"
GOLDEN = FAM / "golden"


def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def _part(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.contiguous() for k, v in sd.items() if k.startswith(prefix)}


def open_clip_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of the loader's conversion, written independently for the test files."""
    out = {"text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
           "text_model.final_layer_norm.weight": sd["ln_final.weight"],
           "text_model.final_layer_norm.bias": sd["ln_final.bias"],
           "text_projection.weight": sd["text_projection"].t().contiguous()}
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    for i in layers:
        s, d = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for ours, hf in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                         ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for p in ("weight", "bias"):
                out[f"{d}{hf}.{p}"] = sd[f"{s}{ours}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = sd[f"{s}attn.in_proj_{p}"].chunk(3)
            out[f"{d}self_attn.q_proj.{p}"], out[f"{d}self_attn.k_proj.{p}"] = q.contiguous(), k.contiguous()
            out[f"{d}self_attn.v_proj.{p}"] = v.contiguous()
    return out


@pytest.fixture(scope="module")
def split_files(models_base: Path) -> dict[str, str]:
    models = models_base / "models"
    sd21 = load_file(str(FAM / "tiny-sd21v.safetensors"))
    xl = load_file(str(FAM / "tiny-sdxl.safetensors"))
    files = {
        "text_encoders/sd21-clip-h-hf.safetensors": (open_clip_to_hf(_part(sd21, "cond_stage_model.model.")),
                                                    FAM / "tiny-sd21v.safetensors"),
        "text_encoders/sd21-clip-h-openclip.safetensors": (_part(sd21, "cond_stage_model.model."),
                                                          FAM / "tiny-sd21v.safetensors"),
        "text_encoders/sdxl-clip-l.safetensors": (_part(xl, "conditioner.embedders.0.transformer."),
                                                 FAM / "tiny-sdxl.safetensors"),
        "text_encoders/sdxl-clip-g.safetensors": (open_clip_to_hf(_part(xl, "conditioner.embedders.1.model.")),
                                                 FAM / "tiny-sdxl.safetensors"),
        "unet/sdxl-unet.safetensors": (_part(xl, "model.diffusion_model."), FAM / "tiny-sdxl.safetensors"),
        "vae/sdxl-vae.safetensors": (_part(xl, "first_stage_model."), FAM / "tiny-sdxl.safetensors"),
        "checkpoints/tiny-sd15-bf16.safetensors": (
            {k: v.to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in load_file(str(FAM.parent / "tiny-sd15" / "tiny-sd15.safetensors")).items()},
            FAM.parent / "tiny-sd15" / "tiny-sd15.safetensors"),
    }
    for rel, (sd, source) in files.items():
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        save_file(sd, str(models / rel), metadata=_meta(source))
    return {Path(k).stem: Path(k).name for k in files}


def _node(runtime: Any, class_type: str) -> Any:
    cls = runtime.registry.get(class_type)
    return cls(), getattr(cls, cls.FUNCTION)


def _encode(runtime: Any, clip: Any, text: str = "a photo of a cat") -> Any:
    node, fn = _node(runtime, "CLIPTextEncode")
    return fn(node, clip=clip, text=text)[0]


def _load(runtime: Any, class_type: str, **inputs: Any) -> Any:
    node, fn = _node(runtime, class_type)
    return fn(node, **inputs)


@pytest.mark.parametrize("file,clip_type", [("sd21-clip-h-hf", "sd2"), ("sd21-clip-h-openclip", "sd2"),
                                            ("sd21-clip-h-openclip", "stable_diffusion")])
def test_clip_loader_sd2_equals_checkpoint(split_files: dict[str, str], runtime: Any, file: str,
                                           clip_type: str) -> None:
    ref = _encode(runtime, _load(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd21v.safetensors")[1])
    got = _encode(runtime, _load(runtime, "CLIPLoader", clip_name=split_files[file], type=clip_type)[0])
    assert got[0][0].shape == ref[0][0].shape
    assert torch.allclose(got[0][0], ref[0][0], rtol=1e-5, atol=1e-5)
    golden = np.load(GOLDEN / "comfy__sd21v__txt2img__euler__normal.cond.npy")
    assert np.abs(got[0][0].numpy() - golden).max() <= 1e-4 * np.abs(golden).max()


@pytest.mark.parametrize("order", [("sdxl-clip-l", "sdxl-clip-g"), ("sdxl-clip-g", "sdxl-clip-l")])
def test_dual_clip_loader_sdxl_equals_checkpoint(split_files: dict[str, str], runtime: Any,
                                                 order: tuple[str, str]) -> None:
    ref = _encode(runtime, _load(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sdxl.safetensors")[1])
    got = _encode(runtime, _load(runtime, "DualCLIPLoader", clip_name1=split_files[order[0]],
                                 clip_name2=split_files[order[1]], type="sdxl")[0])
    assert torch.allclose(got[0][0], ref[0][0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(got[0][1]["pooled_output"], ref[0][1]["pooled_output"], rtol=1e-5, atol=1e-5)


def test_sdxl_golden_from_split_files(split_files: dict[str, str], run: Any, rel: Any) -> None:
    case = json.loads((GOLDEN / "comfy__sdxl__txt2img__euler__normal.json").read_text())
    graph = json.loads(json.dumps(case["graph"]))
    graph["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": split_files["sdxl-unet"],
                                                          "weight_dtype": "default"}}
    graph["10"] = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": split_files["sdxl-clip-l"],
                                                              "clip_name2": split_files["sdxl-clip-g"],
                                                              "type": "sdxl"}}
    graph["11"] = {"class_type": "VAELoader", "inputs": {"vae_name": split_files["sdxl-vae"]}}
    for node in graph.values():
        for k, v in node["inputs"].items():
            if v == ["1", 1]:
                node["inputs"][k] = ["10", 0]
            elif v == ["1", 2]:
                node["inputs"][k] = ["11", 0]
    outcome = run(graph, "split-xl")
    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"].numpy()
    err = rel(latent, np.load(GOLDEN / "comfy__sdxl__txt2img__euler__normal.latent.npy"))
    print(f"sdxl split-file golden latent rel err {err:.2e}")
    assert err < 5e-5


def test_bf16_checkpoint_detects_and_samples(split_files: dict[str, str], runtime: Any) -> None:
    model, clip, _ = _load(runtime, "CheckpointLoaderSimple", ckpt_name=split_files["tiny-sd15-bf16"])
    assert model.family.name == "sd15" and model.in_channels == 4
    cond = _encode(runtime, clip, "a cat")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (out,) = _load(runtime, "KSampler", model=model, seed=1, steps=2, cfg=1.0, sampler_name="euler",
                   scheduler="normal", positive=cond, negative=cond, latent_image=latent, denoise=1.0)
    assert out["samples"].shape == (1, 4, 8, 8) and torch.isfinite(out["samples"]).all()


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    real = str(path.resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(real):
            lo, hi = line.split()[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps (Linux)")
def test_fp32_weights_stay_memory_mapped(runtime: Any) -> None:
    model, clip, vae = _load(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")
    if model.dtype != torch.float32:
        pytest.skip("weights are cast to the compute dtype on this device")
    ranges = _mapped_ranges(FAM.parent / "tiny-sd15" / "tiny-sd15.safetensors")
    assert ranges, "the checkpoint is not memory-mapped"
    params = list(model.diffusion_model.parameters()) + list(vae.vae.parameters())
    inside = [any(lo <= p.data_ptr() < hi for lo, hi in ranges) for p in params]
    assert all(inside)  # adopted from the map, no private copy
