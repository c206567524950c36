"""A diffusers StableDiffusionXLPipeline folder of tiny-sdxl (UNet / VAE converted by diffusers' own
convert_ldm_* functions, text_encoder_2 written out in the transformers layout here) loads as the same networks as
the single file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from catalogue_derive import FIX  # type: ignore[import-not-found]
from safetensors import safe_open
from safetensors.torch import save_file

SDXL = FIX / "families" / "tiny-sdxl.safetensors"


def _open_clip_to_hf(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower -> transformers CLIPTextModelWithProjection names (split in_proj, transpose proj)."""
    out = {"text_model.embeddings.token_embedding.weight": sd[prefix + "token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": sd[prefix + "positional_embedding"],
           "text_model.final_layer_norm.weight": sd[prefix + "ln_final.weight"],
           "text_model.final_layer_norm.bias": sd[prefix + "ln_final.bias"],
           "text_projection.weight": sd[prefix + "text_projection"].t().contiguous()}
    i = 0
    while f"{prefix}transformer.resblocks.{i}.ln_1.weight" in sd:
        src, dst = f"{prefix}transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                     ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for part in ("weight", "bias"):
                out[f"{dst}{b}.{part}"] = sd[f"{src}{a}.{part}"]
        for part in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.in_proj_{part}"].chunk(3, dim=0)
            for name, t in zip("qkv", (q, k, v), strict=True):
                out[f"{dst}self_attn.{name}_proj.{part}"] = t.contiguous()
        i += 1
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    with safe_open(str(SDXL), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        cfg = json.loads(f.metadata()["tiny_sdxl_config"])
    root = tmp_path_factory.mktemp("diffusers") / "tiny-sdxl-diffusers"
    unet = convert_ldm_unet_checkpoint(sd, {"layers_per_block": 2, "addition_embed_type": "text_time",
                                            "class_embed_type": None, "num_class_embeds": None})
    vae = convert_ldm_vae_checkpoint({k: v for k, v in sd.items() if k.startswith("first_stage_model.")},
                                     {"block_out_channels": [32, 32, 64, 64], "down_block_types": ["DownEncoderBlock2D"] * 4,
                                      "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2})
    text_l = {k.removeprefix("conditioner.embedders.0.transformer."): v for k, v in sd.items()
              if k.startswith("conditioner.embedders.0.transformer.text_model.")}
    text_g = _open_clip_to_hf(sd, "conditioner.embedders.1.model.")
    unet_cfg = {"block_out_channels": [32, 64, 64], "attention_head_dim": [2, 4, 4]}  # heads: 16 channels each
    parts = {"unet": ("diffusion_pytorch_model.safetensors", unet, unet_cfg),
             "vae": ("diffusion_pytorch_model.safetensors", vae, {}),
             "text_encoder": ("model.safetensors", text_l,
                              {"num_attention_heads": cfg["text_encoder_l"]["num_attention_heads"]}),
             "text_encoder_2": ("model.safetensors", text_g,
                                {"num_attention_heads": cfg["text_encoder_g"]["num_attention_heads"]})}
    for part, (name, tensors, config) in parts.items():
        (root / part).mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(root / part / name))
        (root / part / "config.json").write_text(json.dumps(config))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    return root


def test_sdxl_folder_loads_the_same_networks(folder: Path, manager: Any, one_thread: None) -> None:
    from engine.diffusers_folder import load_diffusers
    from engine.loading import load_checkpoint

    a = load_checkpoint(SDXL, manager)
    b = load_diffusers(folder, manager)
    assert b[0].family.name == "sdxl" and b[0].diffusion_model.config == a[0].diffusion_model.config
    for x, y in ((a[0].diffusion_model, b[0].diffusion_model), (a[2].vae, b[2].vae), (a[1].encoder, b[1].encoder)):
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys()
        assert all(torch.equal(sx[k], sy[k]) for k in sx), [k for k in sx if not torch.equal(sx[k], sy[k])][:3]
    ca, pa = a[1].encode_from_tokens(a[1].tokenize("a cat"), return_pooled=True)
    cb, pb = b[1].encode_from_tokens(b[1].tokenize("a cat"), return_pooled=True)
    assert torch.equal(ca, cb) and torch.equal(pa, pb)
