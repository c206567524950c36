"""Diffusers pipeline folders (DiffusersLoader): ``model_index.json`` + ``unet/``, ``vae/``, ``text_encoder/``
(``text_encoder_2/`` for SDXL) as in a ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline`` save.

The folder's tensors are renamed to the single-file layout (``engine.diffusers_names``; text encoders under the
family's prefixes, OpenCLIP towers converted from the HF layout) and loaded as a checkpoint, so a folder and the
single file it was converted from give the same networks. Heads, which shapes cannot tell, come from the folders'
``config.json`` (``attention_head_dim`` / ``num_attention_heads``); the family and the prediction type are detected
as for a single file. Weight files are picked as ComfyUI does (``comfy/diffusers_load.py``): fp16 safetensors,
safetensors, fp16 bin, bin.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.clip_files import hf_to_open_clip
from engine.clip_handle import ClipHandle
from engine.detect import detect_family_of_unet
from engine.diffusers_names import unet_to_ldm, vae_to_ldm
from engine.errors import CheckpointError
from engine.families import SDXL, SDXL_REFINER, Family
from engine.handles import ModelHandle, VaeHandle
from engine.model_management import ModelManager, file_cache_key
from engine.state_files import read_shapes, read_state_dict

__all__ = ["UNET_FILES", "TEXT_ENCODER_FILES", "first_file", "load_diffusers", "diffusers_state_dict"]

UNET_FILES = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
              "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.bin")
TEXT_ENCODER_FILES = ("model.fp16.safetensors", "model.safetensors", "pytorch_model.fp16.bin", "pytorch_model.bin")


def first_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder``."""
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable config.json ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _unet_heads(cfg: Mapping[str, Any], family: Family) -> dict[str, int]:
    """UNetConfig head settings from a diffusers UNet config (its ``attention_head_dim`` holds head counts)."""
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim")
    widths = cfg.get("block_out_channels")
    if heads is None or not isinstance(widths, list) or not widths:
        return {}
    per_level = [int(h) for h in heads] if isinstance(heads, list) else [int(heads)] * len(widths)
    if family.default_num_head_channels == -1 and len(set(per_level)) == 1:
        return {"num_heads": per_level[0], "num_head_channels": -1}
    channels = {int(w) // h for w, h in zip(widths, per_level, strict=False) if h > 0}
    if len(channels) == 1:
        return {"num_head_channels": channels.pop(), "num_heads": -1}
    return {"num_heads": per_level[0], "num_head_channels": -1}


def _text_heads(cfg: Mapping[str, Any]) -> dict[str, int]:
    heads = cfg.get("num_attention_heads")
    return {"num_attention_heads": int(heads)} if heads is not None else {}


def _read(path: Path) -> dict[str, torch.Tensor]:
    return dict(read_state_dict(path)[0])


def diffusers_state_dict(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The folder's tensors in the single-file layout, and metadata whose config carries the heads."""
    unet_path = first_file(root / "unet", UNET_FILES)
    if unet_path is None:
        raise CheckpointError(f"{root.name}: no UNet weights in {root / 'unet'} (expected one of {', '.join(UNET_FILES)})")
    unet = unet_to_ldm(_read(unet_path), f"{root.name}/unet/{unet_path.name}")
    family, _, _ = detect_family_of_unet(read_shapes(unet), source=f"{root.name}/unet")
    sd: dict[str, torch.Tensor] = {"model.diffusion_model." + k: v for k, v in unet.items()}
    meta: dict[str, Any] = {}
    unet_heads = _unet_heads(_config(root / "unet"), family)
    if unet_heads:
        meta["unet"] = unet_heads
    vae_path = first_file(root / "vae", UNET_FILES)
    if vae_path is not None:
        vae = vae_to_ldm(_read(vae_path), f"{root.name}/vae/{vae_path.name}")
        sd.update({"first_stage_model." + k: v for k, v in vae.items()})
    towers = [(folder, first_file(root / folder, TEXT_ENCODER_FILES)) for folder in ("text_encoder", "text_encoder_2")]
    present = [(folder, p) for folder, p in towers if p is not None]
    for folder, path in present:
        hf = {k: v for k, v in _read(path).items() if k.startswith(("text_model.", "text_projection"))}
        if "text_model.embeddings.token_embedding.weight" not in hf:
            raise CheckpointError(f"{root.name}/{folder}/{path.name}: not a transformers CLIP text model")
        heads = _text_heads(_config(root / folder))
        if family is SDXL and folder == "text_encoder":
            sd.update({"conditioner.embedders.0.transformer." + k: v for k, v in hf.items()})
            meta_key = "text_encoder_l"
        elif family in (SDXL, SDXL_REFINER):
            index = 1 if family is SDXL else 0
            sd.update({f"conditioner.embedders.{index}.model." + k: v for k, v in hf_to_open_clip(hf).items()})
            meta_key = "text_encoder_g"
        elif family.text_encoders[0].kind == "open_clip":
            sd.update({family.text_encoders[0].prefix + k: v for k, v in hf_to_open_clip(hf).items()})
            meta_key = "text_encoder"
        else:
            sd.update({family.text_encoders[0].prefix + k: v for k, v in hf.items()})
            meta_key = "text_encoder"
        if heads:
            meta[meta_key] = heads
    return sd, {"diffusers_config": json.dumps(meta)} if meta else {}


def load_diffusers(folder: str | os.PathLike[str], manager: ModelManager, embedding_directory: str | None = None,
                   output_clip: bool = True, output_vae: bool = True
                   ) -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
    """MODEL / CLIP / VAE of a diffusers pipeline folder (cached by its weight files' paths and mtimes)."""
    from engine.loading import checkpoint_from_state_dict

    root = Path(folder)
    if not (root / "model_index.json").is_file():
        raise CheckpointError(f"{root}: not a diffusers pipeline folder (no model_index.json)")
    unet_path = first_file(root / "unet", UNET_FILES)
    if unet_path is None:
        raise CheckpointError(f"{root.name}: no UNet weights in {root / 'unet'} (expected one of {', '.join(UNET_FILES)})")

    def build() -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
        sd, metadata = diffusers_state_dict(root)
        return checkpoint_from_state_dict(sd, metadata, read_shapes(sd), root, manager, embedding_directory,
                                          output_clip, output_vae, None)

    others = [first_file(root / "vae", UNET_FILES),
              *(first_file(root / folder, TEXT_ENCODER_FILES) for folder in ("text_encoder", "text_encoder_2"))]
    key = file_cache_key("diffusers", unet_path, str(root.resolve()), embedding_directory, output_clip, output_vae,
                         *(file_cache_key("diffusers", p) for p in others if p is not None))
    model, clip, vae = manager.cached(key, build)
    return model.clone(), clip.clone() if clip else None, vae.clone() if vae else None
