"""Writing MODEL / CLIP / VAE handles back to files in ComfyUI's layouts (comfy/sd.py ``save_checkpoint``,
comfy_extras/nodes_model_merging.py), with every patch (LoRA, merges) baked into the weights.

* checkpoint: the family's single-file names (``model.diffusion_model.*``, ``first_stage_model.*``, the text
  towers under the family's prefixes: ``cond_stage_model.transformer.*`` for SD1, ``cond_stage_model.model.*``
  for SD2, ``conditioner.embedders.{0,1}.*`` for SDXL); no DDPM buffers, no SD1 ``position_ids`` (SDXL's CLIP-L
  gets ComfyUI's ``arange(77)``); ``v_pred`` / ``ztsnr`` marker tensors for v-prediction models.
* metadata: ``modelspec.*`` for SDXL / SDXL refiner / SD3, ``modelspec.predict_key``, then (unless metadata is
  disabled) ``prompt`` and one JSON entry per ``extra_pnginfo`` key, as ComfyUI writes them.
* CLIP files: one per tower, in the HF ``text_model.*`` layout ComfyUI's CLIPSave writes.
* ``logit_scale``: ComfyUI saves its text models' (unused) logit scale for OpenCLIP towers in checkpoints and for
  every tower in CLIPSave files; Loom does not keep the file's value and writes ComfyUI's initial 4.6055.

Heads cannot be read from shapes. When a network's heads differ from its family's standard value (tiny test
models), the file also gets a ``loom_config`` metadata entry (engine.detect.metadata_config) so it loads back;
files of standard models carry exactly ComfyUI's metadata.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.clip_handle import TOWER_MODULES, ClipHandle
from engine.families import SD15, SD20, SDXL, SDXL_REFINER, Family, TextEncoderSpec
from engine.handles import ModelHandle, VaeHandle
from engine.networks.configs import ClipTextConfig, OpenClipConfig, UNetConfig
from engine.sampling.model_sampling import ModelSamplingDiscrete
from engine.sampling.model_sampling_continuous import ModelSamplingContinuousEDM

__all__ = ["unet_state_dict", "clip_checkpoint_state", "vae_state_dict", "checkpoint_state", "checkpoint_metadata",
           "clip_tower_files", "prompt_metadata", "save_safetensors", "LOOM_CONFIG_KEY"]

LOOM_CONFIG_KEY = "loom_config"
UNET_PREFIX = "model.diffusion_model."
_CLIP_L_POSITIONS = 77
COMFY_LOGIT_SCALE = 4.6055
# ComfyUI's modelspec.architecture per family (comfy_extras/nodes_model_merging.py save_checkpoint)
_ARCHITECTURE = {"sdxl": "stable-diffusion-xl-v1-base", "sdxl_refiner": "stable-diffusion-xl-v1-refiner",
                 "sd35": "stable-diffusion-v3-medium"}
_SD_FAMILIES = (SD15, SD20, SDXL, SDXL_REFINER)


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU, contiguous, in storage of its own (a view of a memory-mapped file is copied:
    safetensors refuses tensors that share memory)."""
    t = t.detach().to("cpu").contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or t.storage_offset() != 0:
        t = t.clone()
    return t


def _tensors(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: _own(v) for k, v in sd.items()}


def save_safetensors(path: str | os.PathLike[str], sd: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None) -> None:
    """Write ``sd`` as a .safetensors file (through a temporary name, so no reader sees half a file)."""
    from safetensors.torch import save_file

    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    save_file({k: _own(v) for k, v in sd.items()}, str(tmp), metadata=dict(metadata) if metadata else None)
    os.replace(tmp, target)


def unet_state_dict(model: ModelHandle, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """The diffusion model's weights (patches baked in) under ``prefix``."""
    return _tensors(model.patched_state_dict(), prefix)


def vae_state_dict(vae: VaeHandle, prefix: str = "") -> dict[str, torch.Tensor]:
    """The VAE's weights under ``prefix``."""
    return _tensors(vae.vae.state_dict(), prefix)


def _tower_state(clip: ClipHandle) -> dict[str, dict[str, torch.Tensor]]:
    """Tower module name -> that tower's weights (patches baked in), in Loom's (= the checkpoint's) names."""
    towers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in clip.patched_state_dict().items():
        tower, _, name = key.partition(".")
        towers.setdefault(tower, {})[name] = value
    return towers


def _spec_base(spec: TextEncoderSpec) -> str:
    """The prefix a tower's own names take in a checkpoint (the inverse of engine.loading's strip)."""
    return spec.prefix if spec.kind == "open_clip" else spec.prefix.removesuffix("transformer.")


def _logit_scale(weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The CLIP ``logit_scale`` ComfyUI's text models carry and save (its initial value; Loom does not use it)."""
    dtype = next(iter(weights.values())).dtype
    return torch.tensor(COMFY_LOGIT_SCALE, dtype=dtype)


def clip_checkpoint_state(clip: ClipHandle, family: Family) -> dict[str, torch.Tensor]:
    """The text towers under ``family``'s checkpoint prefixes, as ComfyUI writes them."""
    towers = _tower_state(clip)
    wanted = {TOWER_MODULES[spec.key] for spec in family.text_encoders}
    if set(towers) != wanted or family not in _SD_FAMILIES:
        raise ValueError(f"the CLIP's text towers {sorted(towers)} do not fit a {family.name} checkpoint "
                         f"(expects {sorted(wanted)}); save them with CLIPSave instead")
    out: dict[str, torch.Tensor] = {}
    for spec in family.text_encoders:
        weights = {k: v for k, v in towers[TOWER_MODULES[spec.key]].items()
                   if not k.endswith(("position_ids", "text_projection.weight", "logit_scale"))}
        base = _spec_base(spec)
        out.update(_tensors(weights, base))
        if spec.kind == "open_clip":
            out[base + "logit_scale"] = _logit_scale(weights)
        if spec.kind == "clip_l" and family is SDXL:
            out[base + "transformer.text_model.embeddings.position_ids"] = \
                torch.arange(_CLIP_L_POSITIONS).expand((1, -1)).contiguous()
    return out


def _prediction_keys(model: ModelHandle) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """``modelspec.predict_key`` and the marker tensors, as ComfyUI decides them: the prediction type is the one
    the network was loaded with (a ModelSamplingDiscrete patch does not change it); zero-SNR and the EDM v sigma
    range come from the schedule in use."""
    meta: dict[str, str] = {}
    extra: dict[str, torch.Tensor] = {}
    sampling = model.model_sampling
    if isinstance(sampling, ModelSamplingContinuousEDM) and sampling.prediction == "v":
        extra["edm_vpred.sigma_max"] = torch.tensor(float(sampling.sigma_max)).float()
        extra["edm_vpred.sigma_min"] = torch.tensor(float(sampling.sigma_min)).float()
    base = model.base_sampling
    if isinstance(base, ModelSamplingDiscrete):
        if base.prediction == "v":
            meta["modelspec.predict_key"] = "v"
            extra["v_pred"] = torch.tensor([])
            if isinstance(sampling, ModelSamplingDiscrete) and sampling.zero_snr:
                extra["ztsnr"] = torch.tensor([])
        else:
            meta["modelspec.predict_key"] = "epsilon"
    return meta, extra


def checkpoint_state(model: ModelHandle, clip: ClipHandle | None = None, vae: VaeHandle | None = None
                     ) -> dict[str, torch.Tensor]:
    """All tensors of a single-file checkpoint of ``model`` (+ ``clip``, ``vae``) in ComfyUI's layout."""
    family = model.family
    sd = unet_state_dict(model)
    if clip is not None:
        sd.update(clip_checkpoint_state(clip, family))
    if vae is not None:
        sd.update(vae_state_dict(vae, family.vae_prefix))
    sd.update(_prediction_keys(model)[1])
    return sd


def prompt_metadata(prompt: object, extra_pnginfo: Mapping[str, object] | None) -> dict[str, str]:
    """``prompt`` (JSON, "" when absent) and one JSON entry per extra_pnginfo key, as ComfyUI's saves write."""
    meta = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    for key, value in (extra_pnginfo or {}).items():
        meta[key] = json.dumps(value)
    return meta


def _tower_heads(module: torch.nn.Module) -> int:
    config = module.config
    if isinstance(config, ClipTextConfig):
        return int(config.num_attention_heads)
    if isinstance(config, OpenClipConfig):
        return int(config.heads)
    raise ValueError(f"unknown text tower config {type(config).__name__}")


def _loom_config(model: ModelHandle | None, clip: ClipHandle | None, family: Family) -> dict[str, Any] | None:
    """Heads that differ from the family's standard values (None when all are standard)."""
    cfg: dict[str, Any] = {}
    needed = False
    if model is not None and isinstance(model.diffusion_model.config, UNetConfig):
        unet = model.diffusion_model.config
        cfg["unet"] = {"num_heads": unet.num_heads, "num_head_channels": unet.num_head_channels}
        needed = (unet.num_heads, unet.num_head_channels) != (family.default_num_heads,
                                                              family.default_num_head_channels)
    if clip is not None:
        for spec in family.text_encoders:
            module = clip.encoders[TOWER_MODULES[spec.key]]
            heads = _tower_heads(module)
            for key in spec.meta_keys:
                cfg[key] = {"num_attention_heads": heads}
            needed = needed or heads != spec.default_heads
    return cfg if needed else None


def checkpoint_metadata(model: ModelHandle, clip: ClipHandle | None, title: str, prompt: object,
                        extra_pnginfo: Mapping[str, object] | None, with_prompt: bool = True) -> dict[str, str]:
    """ComfyUI's checkpoint metadata (``title`` = "<filename> <counter>"); ``with_prompt`` False for
    ``--disable-metadata``."""
    family = model.family
    meta: dict[str, str] = {}
    arch = _ARCHITECTURE.get(family.name)
    if arch is not None:
        meta.update({"modelspec.architecture": arch, "modelspec.sai_model_spec": "1.0.0",
                     "modelspec.implementation": "sgm", "modelspec.title": title})
    meta.update(_prediction_keys(model)[0])
    if with_prompt:
        meta.update(prompt_metadata(prompt, extra_pnginfo))
    config = _loom_config(model, clip, family)
    if config is not None:
        meta[LOOM_CONFIG_KEY] = json.dumps(config)
    return meta


def _open_clip_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP text-tower names -> HF CLIPTextModelWithProjection names (split in_proj, transposed projection)."""
    out = {
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].t().contiguous(),
    }
    renames = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
               "attn.out_proj": "self_attn.out_proj"}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks.")})
    for i in layers:
        src, dst = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for ours, hf in renames.items():
            for part in ("weight", "bias"):
                out[f"{dst}{hf}.{part}"] = sd[f"{src}{ours}.{part}"]
        for part in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.in_proj_{part}"].chunk(3, dim=0)
            for name, t in (("q", q), ("k", k), ("v", v)):
                out[f"{dst}self_attn.{name}_proj.{part}"] = t.contiguous()
    return out


def _tower_config(tower: str, heads: int) -> dict[str, Any] | None:
    """Metadata config of a CLIPSave file whose heads are not the standard ones of any family using it."""
    token_key = next(k for k, v in TOWER_MODULES.items() if v == tower)
    specs = [s for f in _SD_FAMILIES for s in f.text_encoders if s.key == token_key]
    if not specs or all(heads == s.default_heads for s in specs):
        return None
    keys = {"text_encoder", *(k for s in specs for k in s.meta_keys)}
    return {k: {"num_attention_heads": heads} for k in sorted(keys)}


def clip_tower_files(clip: ClipHandle) -> list[tuple[str, dict[str, torch.Tensor], dict[str, str]]]:
    """CLIPSave's files: (tower name, tensors in HF ``text_model.*`` names, extra metadata) per text tower."""
    towers = _tower_state(clip)
    files: list[tuple[str, dict[str, torch.Tensor], dict[str, str]]] = []
    for tower in ("clip_l", "clip_g", "clip_h", "t5xxl"):
        if tower not in towers:
            continue
        weights = towers[tower]
        module = clip.encoders[tower]
        if isinstance(module.config, OpenClipConfig):
            hf = _open_clip_to_hf(weights)
        else:
            hf = {k.removeprefix("transformer."): v for k, v in weights.items() if not k.endswith("position_ids")}
        extra: dict[str, str] = {}
        if tower != "t5xxl":
            hf["logit_scale"] = _logit_scale(weights)
            config = _tower_config(tower, _tower_heads(module))
            if config is not None:
                extra[LOOM_CONFIG_KEY] = json.dumps(config)
        files.append((tower, {k: _own(v) for k, v in hf.items()}, extra))
    return files
