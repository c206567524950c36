"""LoRA: kohya-style low-rank patches (``lora_down`` / ``lora_up`` / ``alpha``) for MODEL and CLIP handles.

W' = W + strength * (alpha / rank) * (up.flatten(1) @ down.flatten(1)) reshaped to W, computed in float32
when the handle runs (engine.patching); base weights are never modified. Module names are read in the
diffusers layout (SD1 ``lora_unet_down_blocks_0_...``) and the LDM layout (SDXL ``lora_unet_input_blocks_4_1_...``);
text towers as ``lora_te_`` (SD1), ``lora_te1_`` (CLIP-L) and ``lora_te2_`` (bigG, HF names; q/k/v patch row
thirds of OpenCLIP's fused ``in_proj_weight``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from engine.clip_handle import ClipHandle
from engine.handles import ModelHandle
from engine.networks.text_encoders import OpenClipTextEncoder
from engine.patching import Patch
from engine.state_files import read_state_dict
from engine.unet_names import ldm_to_diffusers_modules

__all__ = ["load_lora", "apply_lora", "unet_lora_names", "clip_lora_names", "LoraTarget"]

# (parameter name in the handle's network, row slice or None)
LoraTarget = tuple[str, "slice | None"]

_HF_TO_OPENCLIP = {"self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_QKV = {"self_attn.q_proj": 0, "self_attn.k_proj": 1, "self_attn.v_proj": 2}


def _linear_like(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def unet_lora_names(model: ModelHandle) -> dict[str, LoraTarget]:
    """kohya UNet module name (both layouts) -> (parameter, None)."""
    net = model.diffusion_model
    modules = _linear_like(net)
    names: dict[str, LoraTarget] = {}
    for ldm, diff in ldm_to_diffusers_modules(net.config, modules).items():
        names["lora_unet_" + diff.replace(".", "_")] = (ldm + ".weight", None)
    for ldm in modules:
        names["lora_unet_" + ldm.replace(".", "_")] = (ldm + ".weight", None)
    return names


def _clip_l_names(prefix: str, tower: str, module: nn.Module) -> dict[str, LoraTarget]:
    out: dict[str, LoraTarget] = {}
    for name in _linear_like(module):
        if name.startswith("transformer.text_model."):
            hf = name[len("transformer."):]
            out[prefix + hf.replace(".", "_")] = (f"{tower}.{name}.weight", None)
    return out


def _open_clip_names(prefix: str, tower: str, module: OpenClipTextEncoder) -> dict[str, LoraTarget]:
    width = module.config.width
    out: dict[str, LoraTarget] = {}
    for i in range(module.config.layers):
        base = f"{tower}.transformer.resblocks.{i}."
        for hf, ours in _HF_TO_OPENCLIP.items():
            out[f"{prefix}text_model_encoder_layers_{i}_{hf.replace('.', '_')}"] = (base + ours + ".weight", None)
        for hf, third in _QKV.items():
            out[f"{prefix}text_model_encoder_layers_{i}_{hf.replace('.', '_')}"] = (
                base + "attn.in_proj_weight", slice(third * width, (third + 1) * width))
    return out


def clip_lora_names(clip: ClipHandle) -> dict[str, LoraTarget]:
    """kohya text-encoder module name -> (parameter, row slice or None)."""
    towers = dict(clip.encoders.items())
    names: dict[str, LoraTarget] = {}
    if set(towers) == {"clip_l"}:
        names.update(_clip_l_names("lora_te_", "clip_l", towers["clip_l"]))
    if "clip_l" in towers:
        names.update(_clip_l_names("lora_te1_", "clip_l", towers["clip_l"]))
    for tower in ("clip_g", "clip_h"):
        mod = towers.get(tower)
        if isinstance(mod, OpenClipTextEncoder):
            prefix = "lora_te2_" if "clip_l" in towers else "lora_te_"
            names.update(_open_clip_names(prefix, tower, mod))
            if tower == "clip_g" and "clip_l" not in towers:
                names.update(_open_clip_names("lora_te2_", tower, mod))  # refiner files keep te2
    return names


def _delta(sd: Mapping[str, torch.Tensor], module: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    up = sd.get(module + ".lora_up.weight")
    down = sd.get(module + ".lora_down.weight")
    if up is None or down is None:
        return None
    alpha = sd.get(module + ".alpha")
    rank = down.shape[0]
    scale = float(alpha) / rank if alpha is not None else 1.0
    mat = scale * (up.float().flatten(1) @ down.float().flatten(1))
    return lambda w: mat.to(w.device)


def _patches(sd: Mapping[str, torch.Tensor], names: Mapping[str, LoraTarget]
             ) -> tuple[dict[str, Patch], set[str]]:
    patches: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {}
    used: set[str] = set()
    for module, (param, rows) in names.items():
        delta = _delta(sd, module)
        if delta is None:
            continue
        used.add(module)

        def patch(w: torch.Tensor, delta: Callable[[torch.Tensor], torch.Tensor] = delta,
                  rows: slice | None = rows) -> torch.Tensor:
            if rows is None:
                return delta(w).reshape(w.shape)
            out = torch.zeros_like(w)
            out[rows] = delta(w).reshape(out[rows].shape)
            return out

        patches.setdefault(param, []).append(patch)
    merged: dict[str, Patch] = {}
    for param, fns in patches.items():
        merged[param] = fns[0] if len(fns) == 1 else _summed(fns)
    return merged, used


def _summed(fns: list[Callable[[torch.Tensor], torch.Tensor]]) -> Callable[[torch.Tensor], torch.Tensor]:
    """One patch from several modules patching the same weight (e.g. bigG's q, k and v thirds)."""
    def patch(w: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(w)
        for f in fns:
            total = total + f(w)
        return total
    return patch


def load_lora(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (.safetensors, or a weights-only pickle)."""
    sd, _ = read_state_dict(path)
    return sd


def apply_lora(model: ModelHandle | None, clip: ClipHandle | None, lora: Mapping[str, torch.Tensor],
               strength_model: float, strength_clip: float) -> tuple[Any, Any]:
    """Clones of ``model`` / ``clip`` carrying the LoRA (a handle passed as None stays None)."""
    modules = {k.split(".")[0] for k in lora if k.endswith(".lora_down.weight")}
    used: set[str] = set()
    new_model = new_clip = None
    if model is not None:
        new_model = model.clone()
        patches, hit = _patches(lora, unet_lora_names(model))
        new_model.add_patches(patches, strength_model)
        used |= hit
    if clip is not None:
        new_clip = clip.clone()
        patches, hit = _patches(lora, clip_lora_names(clip))
        new_clip.add_patches(patches, strength_clip)
        used |= hit
    unknown = modules - used
    te_only = {m for m in unknown if m.startswith("lora_te")}
    if clip is None:
        unknown -= te_only  # a model-only load ignores text-encoder keys
    if unknown and len(unknown) == len(modules):
        raise ValueError(f"LoRA matches none of this model's layers ({len(modules)} modules such as "
                         f"{sorted(modules)[:3]}); is it for a different model family?")
    return new_model, new_clip
