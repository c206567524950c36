"""Builds the tiny SD2.1 unCLIP-H checkpoint of the catalogue fixtures at test time (26 MB, never stored):
tiny-sd21v + the stored delta (label_emb ADM MLP, noise_augmentor buffers) + the tiny CLIP vision tower renamed to
OpenCLIP's ``embedder.model.visual.*`` layout, as the catalogue README's recipe says."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FIX = Path(__file__).resolve().parents[1] / "fixtures"
SD21V = FIX / "families" / "tiny-sd21v.safetensors"
DELTA = FIX / "catalogue" / "tiny-sd21-unclip-h.delta.safetensors"
CLIP_VISION = FIX / "adapters" / "tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
UNCLIP_NAME = "tiny-sd21-unclip-h.safetensors"
# the catalogue README's content sha256 of the derived file
CONTENT_SHA256 = "ee430e0baff62ce502906ae26e56fe6b8b8b5aa0d7c9c8b1ccf9865bb2cc63b8"


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def openclip_visual(hf: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """HF CLIPVisionModelWithProjection tensors under OpenCLIP ``visual.`` names (q/k/v fused, proj transposed)."""
    vm = "vision_model."
    out = {prefix + "class_embedding": hf[vm + "embeddings.class_embedding"],
           prefix + "conv1.weight": hf[vm + "embeddings.patch_embedding.weight"],
           prefix + "positional_embedding": hf[vm + "embeddings.position_embedding.weight"],
           prefix + "proj": hf["visual_projection.weight"].t().contiguous()}
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{prefix}{ours}.{p}"] = hf[f"{vm}{theirs}.{p}"]
    layers = sorted({int(k.split(".")[3]) for k in hf if k.startswith(vm + "encoder.layers.")})
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for i in layers:
        src, dst = f"{vm}encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            for ours, theirs in names.items():
                out[f"{dst}{ours}.{p}"] = hf[f"{src}{theirs}.{p}"]
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([hf[f"{src}self_attn.{q}_proj.{p}"] for q in "qkv"])
    return out


def content_hash(sd: dict[str, torch.Tensor]) -> str:
    """The catalogue README's content hash: sha256 over sorted ``name|dtype|shape|`` + raw bytes."""
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(f"{k}|{str(v.dtype).replace('torch.', '')}|{list(v.shape)}|".encode())
        h.update(v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def build_unclip(out_dir: Path) -> tuple[Path, str]:
    """Write the unCLIP checkpoint into ``out_dir``; returns (path, content hash)."""
    sd, _ = _read(SD21V)
    delta, meta = _read(DELTA)
    assert not set(delta) & set(sd)
    sd.update(delta)
    hf, _ = _read(CLIP_VISION)
    sd.update(openclip_visual(hf, "embedder.model.visual."))
    path = out_dir / UNCLIP_NAME
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path),
              metadata={"format": "pt", "tiny_sd21_unclip_h_config": meta["tiny_sd21_unclip_h_config"]})
    return path, content_hash(sd)
