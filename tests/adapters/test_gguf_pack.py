"""The real city96/ComfyUI-GGUF pack (pinned commit, copied into a tmp custom_nodes/ at test time) loads unchanged
and its `UnetLoaderGGUF` gives a MODEL Loom samples with: a GGUF of the tiny SD1.5 UNet (written here with the
`gguf` package, Q8_0 where the rows allow, else F16; vectors F32) samples within quantisation error of the
checkpoint's own fp32 UNet, and an all-F16 GGUF within fp16 rounding of it; a LoRA on the quantised weights
changes the result as it changes the checkpoint's; a Q8_0 Flux.1-dev GGUF samples like its safetensors, also with
the T5 text encoder from a GGUF (`DualCLIPLoaderGGUF`)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from adapter_helpers import FIX, run_graph
from ipadapter_pack import export_pack, load_pack, pack_mirror, unload_pack

REPO, COMMIT = "city96/ComfyUI-GGUF", "795e45156ece99afbc3efef911e63fcb46e6a20d"
MIRROR = pack_mirror(REPO, COMMIT, "LOOM_GGUF_REPO")
gguf = pytest.importorskip("gguf", reason="the GGUF pack's own dependency `gguf` is not installed")
pytestmark = pytest.mark.skipif(MIRROR is None, reason=f"no git mirror of {REPO} at {COMMIT[:12]} (set "
                                "LOOM_GGUF_REPO to its git directory)")
CKPT = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
LORA = FIX / "families" / "tiny-sd15-lora.safetensors"
FLUX_DIR = FIX / "families2"


def write_gguf(path: Path, source: Path, arch: str, quantise: bool, prefix: str = "",
               name: Callable[[str], str] = str, fallback: str = "F16") -> None:
    """`source`'s tensors (keys under `prefix`, renamed by `name`) as a GGUF file laid out as the pack's convert
    tool writes one: matrices Q8_0 (`quantise`, rows of whole 32-blocks) or `fallback` (F16, BF16), vectors F32."""
    from safetensors.torch import load_file

    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in load_file(str(source)).items():
        if not key.startswith(prefix):
            continue
        data = value.float().numpy()
        qtype = gguf.GGMLQuantizationType.F32
        if value.ndim > 1:
            qtype = (gguf.GGMLQuantizationType.Q8_0 if quantise and value.shape[-1] % 32 == 0
                     else gguf.GGMLQuantizationType[fallback])
            if qtype == gguf.GGMLQuantizationType.F16:
                data = data.astype("float16")
        writer.add_tensor(name(key[len(prefix):]), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# T5 tensor names as llama.cpp writes them (the pack maps them back to the HF names on load)
_T5_GGUF_NAMES = (("shared.", "token_embd."), ("encoder.final_layer_norm.", "enc.output_norm."),
                  ("encoder.block.", "enc.blk."), ("layer.0.SelfAttention.relative_attention_bias", "attn_rel_b"),
                  ("layer.0.SelfAttention.q", "attn_q"), ("layer.0.SelfAttention.k", "attn_k"),
                  ("layer.0.SelfAttention.v", "attn_v"), ("layer.0.SelfAttention.o", "attn_o"),
                  ("layer.0.layer_norm", "attn_norm"), ("layer.1.DenseReluDense.wi_0", "ffn_gate"),
                  ("layer.1.DenseReluDense.wi_1", "ffn_up"), ("layer.1.DenseReluDense.wo", "ffn_down"),
                  ("layer.1.layer_norm", "ffn_norm"))


def t5_gguf_name(key: str) -> str:
    for hf, gg in _T5_GGUF_NAMES:
        key = key.replace(hf, gg)
    return key


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    assert MIRROR is not None
    base = tmp_path_factory.mktemp("gguf")
    (base / "models" / "unet").mkdir(parents=True)
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / CKPT.name).symlink_to(CKPT)
    (base / "models" / "loras").mkdir(parents=True)
    (base / "models" / "loras" / LORA.name).symlink_to(LORA)
    unet = "model.diffusion_model."
    write_gguf(base / "models" / "unet" / "tiny-Q8_0.gguf", CKPT, "sd1", quantise=True, prefix=unet)
    write_gguf(base / "models" / "unet" / "tiny-F16.gguf", CKPT, "sd1", quantise=False, prefix=unet)
    write_gguf(base / "models" / "unet" / "tiny-flux-Q8_0.gguf", FLUX_DIR / "tiny-flux1-dev.safetensors", "flux",
               quantise=True)
    (base / "models" / "text_encoders").mkdir(parents=True)
    write_gguf(base / "models" / "text_encoders" / "tiny-t5xxl-BF16.gguf", FLUX_DIR / "tiny-t5xxl_fp16.safetensors",
               "t5encoder", quantise=True, name=t5_gguf_name, fallback="BF16")
    for folder, name in (("diffusion_models", "tiny-flux1-dev.safetensors"), ("text_encoders", "tiny-clip_l.safetensors"),
                         ("text_encoders", "tiny-t5xxl_fp16.safetensors"), ("vae", "tiny-flux-ae.safetensors")):
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        (base / "models" / folder / name).symlink_to(FLUX_DIR / name)
    export_pack(MIRROR, base / "custom_nodes", REPO, COMMIT)
    rt = build_runtime(base, cpu=True)
    env, reports = load_pack(rt, base)
    assert [r.error for r in reports if r.error] == []
    yield rt
    unload_pack(env)
    rt.close()


def _graph(unet: str) -> dict[str, Any]:
    """The same txt2img twice: on the GGUF file's UNet ("gguf") and on the checkpoint's own ("ref")."""
    ks = {"seed": 1, "steps": 3, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
          "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["lat", 0]}
    return {
        "ck": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT.name}},
        "un": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": unet}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ck", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ck", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "gguf": {"class_type": "KSampler", "inputs": {"model": ["un", 0], **ks}},
        "ref": {"class_type": "KSampler", "inputs": {"model": ["ck", 0], **ks}},
        "d1": {"class_type": "VAEDecode", "inputs": {"samples": ["gguf", 0], "vae": ["ck", 2]}},
        "d2": {"class_type": "VAEDecode", "inputs": {"samples": ["ref", 0], "vae": ["ck", 2]}},
        "p1": {"class_type": "PreviewImage", "inputs": {"images": ["d1", 0]}},
        "p2": {"class_type": "PreviewImage", "inputs": {"images": ["d2", 0]}},
    }


def _sample(rt: Any, unet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent from the GGUF UNet, latent from the checkpoint's UNet), same prompt, seed and sampler."""
    outcome = run_graph(rt, _graph(unet))
    assert outcome.error is None, outcome.error
    return outcome.values["gguf"][0][0]["samples"], outcome.values["ref"][0][0]["samples"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_quantised_gguf_unet_samples_like_the_checkpoint(runtime: Any) -> None:
    got, ref = _sample(runtime, "tiny-Q8_0.gguf")
    assert got.shape == ref.shape == (1, 4, 8, 8)
    print(f"Q8_0 GGUF vs checkpoint: latent rel. error {_rel(got, ref):.2e}")
    assert 0 < _rel(got, ref) < 0.02  # Q8_0 weights: close, not identical


def test_f16_gguf_unet_samples_like_the_checkpoint(runtime: Any) -> None:
    got, ref = _sample(runtime, "tiny-F16.gguf")
    print(f"F16 GGUF vs checkpoint: latent rel. error {_rel(got, ref):.2e}")
    assert _rel(got, ref) < 2e-3


def test_a_lora_on_quantised_weights_applies_to_their_dequantised_values(runtime: Any) -> None:
    """LoraLoaderModelOnly on the GGUF MODEL and on the checkpoint's: the same change, within Q8_0 error."""
    graph = _graph("tiny-Q8_0.gguf")
    for name, model in (("lora_gguf", "un"), ("lora_ref", "ck")):
        graph[name] = {"class_type": "LoraLoaderModelOnly",
                       "inputs": {"model": [model, 0], "lora_name": LORA.name, "strength_model": 1.0}}
    graph["gguf"]["inputs"]["model"] = ["lora_gguf", 0]
    graph["ref"]["inputs"]["model"] = ["lora_ref", 0]
    outcome = run_graph(runtime, graph, "lora")
    assert outcome.error is None, outcome.error
    got, ref = outcome.values["gguf"][0][0]["samples"], outcome.values["ref"][0][0]["samples"]
    without, _ = _sample(runtime, "tiny-Q8_0.gguf")
    print(f"Q8_0 GGUF + LoRA vs checkpoint + LoRA: latent rel. error {_rel(got, ref):.2e} "
          f"(the LoRA moves it by {_rel(without, got):.2f})")
    assert _rel(got, ref) < 0.02 and _rel(without, got) > 0.05


def test_quantised_flux_gguf_samples_like_its_safetensors(runtime: Any) -> None:
    """Flux, the GGUF pack's main use: the shared Flux golden graph (shortened), once through UNETLoader on the
    bf16 safetensors file and once through UnetLoaderGGUF on its Q8_0 GGUF."""
    import json

    case = json.loads((FLUX_DIR / "golden" / "comfy__flux_dev__txt2img__euler__simple__128x128.json").read_text())
    graph = {k: v for k, v in case["graph"].items() if v["class_type"] not in ("VAEDecode", "SaveImage")}
    graph["5"]["inputs"]["steps"] = 4
    graph["g40"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "tiny-flux-Q8_0.gguf"}}
    graph["g20"] = {**graph["20"], "inputs": {**graph["20"]["inputs"], "model": ["g40", 0]}}
    graph["g5"] = {**graph["5"], "inputs": {**graph["5"]["inputs"], "model": ["g20", 0]}}
    for sampler in ("5", "g5"):
        graph[f"d{sampler}"] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": ["42", 0]}}
        graph[f"p{sampler}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"d{sampler}", 0]}}
    outcome = run_graph(runtime, graph, "flux")
    assert outcome.error is None, outcome.error
    got, ref = outcome.values["g5"][0][0]["samples"], outcome.values["5"][0][0]["samples"]
    print(f"Q8_0 Flux GGUF vs bf16 safetensors: latent rel. error {_rel(got, ref):.2e}")
    assert got.shape == ref.shape and 0 < _rel(got, ref) < 0.02


def test_flux_with_gguf_text_encoder_and_unet_samples_like_its_safetensors(runtime: Any) -> None:
    """The pack's full Flux workflow: DualCLIPLoaderGGUF (CLIP-L safetensors + a BF16-packed T5 GGUF in
    llama.cpp's names) and UnetLoaderGGUF, against DualCLIPLoader + UNETLoader on the fp16 / bf16 files."""
    import json

    case = json.loads((FLUX_DIR / "golden" / "comfy__flux_dev__txt2img__euler__simple__128x128.json").read_text())
    graph = {k: v for k, v in case["graph"].items() if v["class_type"] not in ("VAEDecode", "SaveImage")}
    graph["5"]["inputs"]["steps"] = 2
    graph["g41"] = {"class_type": "DualCLIPLoaderGGUF", "inputs": {
        "clip_name1": "tiny-clip_l.safetensors", "clip_name2": "tiny-t5xxl-BF16.gguf", "type": "flux"}}
    graph["g40"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "tiny-flux-Q8_0.gguf"}}
    for node in ("2", "3", "20", "21", "5"):
        inputs = {k: ["g" + v[0], v[1]] if isinstance(v, list) and v[0] in ("41", "40", "2", "3", "20", "21") else v
                  for k, v in graph[node]["inputs"].items()}
        graph["g" + node] = {**graph[node], "inputs": inputs}
    for sampler in ("5", "g5"):
        graph[f"d{sampler}"] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": ["42", 0]}}
        graph[f"p{sampler}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"d{sampler}", 0]}}
    outcome = run_graph(runtime, graph, "flux-te")
    assert outcome.error is None, (outcome.error or {}).get("exception_message")
    (cond, extra), = outcome.values["g2"][0][0]
    (ref_cond, ref_extra), = outcome.values["2"][0][0]
    print(f"GGUF T5 (BF16) vs fp16 safetensors: cond rel. error {_rel(cond, ref_cond):.2e}, pooled "
          f"{_rel(extra['pooled_output'], ref_extra['pooled_output']):.2e}")
    assert cond.shape == ref_cond.shape and 0 < _rel(cond, ref_cond) < 0.02
    assert _rel(extra["pooled_output"], ref_extra["pooled_output"]) < 1e-5  # CLIP-L: the same fp16 file
    got, ref = outcome.values["g5"][0][0]["samples"], outcome.values["5"][0][0]["samples"]
    print(f"GGUF T5 + GGUF UNet vs safetensors: latent rel. error {_rel(got, ref):.2e}")
    assert got.shape == ref.shape and 0 < _rel(got, ref) < 0.03
