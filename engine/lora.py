"""LoRA: low-rank patches (kohya ``lora_down`` / ``lora_up``, PEFT ``lora_A`` / ``lora_B``; ``alpha``) for MODEL and
CLIP handles.

W' = W + strength * (alpha / rank) * (up.flatten(1) @ down.flatten(1)) reshaped to W, computed in float32
when the handle runs (engine.patching); base weights are never modified. Module names are read in the
diffusers layout (SD1 ``lora_unet_down_blocks_0_...``) and the LDM layout (SDXL ``lora_unet_input_blocks_4_1_...``);
text towers as ``lora_te_`` (SD1), ``lora_te1_`` (CLIP-L) and ``lora_te2_`` (bigG, HF names; q/k/v patch row
thirds of OpenCLIP's fused ``in_proj_weight``; SD3's bigG runs in HF names) and T5-XXL as ``lora_te3_`` (SD3) or
``lora_te2_`` / ``lora_te3_`` (Flux), OneTrainer's numbering. The flow transformers' (SD3 MMDiT, Flux) layouts: engine.flow_lora.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.clip_handle import ClipHandle
from engine.flow_lora import flow_lora_names
from engine.handles import ModelHandle
from engine.networks.text_encoders import OpenClipTextEncoder
from engine.networks.unet import UNetConfig
from engine.patching import Patch
from engine.state_files import read_state_dict
from engine.unet_names import ldm_to_diffusers_modules

__all__ = ["load_lora", "apply_lora", "apply_lora_with_report", "unet_lora_names", "unet_lora_names_for",
           "clip_lora_names", "lora_modules", "match_lora", "LoraMatch", "LoraTarget", "model_lora_patches",
           "clip_lora_patches"]

# (parameter name in the handle's network, row slice, SWAP_HALVES or None)
LoraTarget = tuple[str, "slice | str | None"]
# (up, down) key suffixes: kohya / LyCORIS, and PEFT / diffusers (lora_B is the up matrix)
_PAIRS = ((".lora_up.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_A.weight"))
# module-name prefixes of diffusion-model LoRA modules (UNet and the flow transformers' layouts)
MODEL_PREFIXES = ("lora_unet_", "transformer.", "lora_transformer_", "diffusion_model.", "base_model.model.",
                  "lycoris_")

_HF_TO_OPENCLIP = {"self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_QKV = {"self_attn.q_proj": 0, "self_attn.k_proj": 1, "self_attn.v_proj": 2}


def _linear_like(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def unet_lora_names_for(config: UNetConfig, modules: Sequence[str]) -> dict[str, LoraTarget]:
    """kohya UNet module name (diffusers and LDM layouts) -> (parameter, None) for a UNet's Linear/Conv names."""
    names: dict[str, LoraTarget] = {}
    for ldm, diff in ldm_to_diffusers_modules(config, list(modules)).items():
        names["lora_unet_" + diff.replace(".", "_")] = (ldm + ".weight", None)
    for ldm in modules:
        names["lora_unet_" + ldm.replace(".", "_")] = (ldm + ".weight", None)
    return names


def unet_lora_names(model: ModelHandle) -> dict[str, LoraTarget]:
    """LoRA module name -> (parameter, rows): kohya UNet names (both layouts), or the flow transformers' layouts
    (engine.flow_lora)."""
    net = model.diffusion_model
    if model.family.arch in ("mmdit", "flux"):
        return flow_lora_names(net, model.family.arch)
    return unet_lora_names_for(net.config, _linear_like(net))


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
        elif mod is not None and tower == "clip_g":  # SD3's bigG runs in HF names
            names.update(_clip_l_names("lora_te2_" if "clip_l" in towers else "lora_te_", tower, mod))
    if "t5xxl" in towers:
        # OneTrainer numbers T5 after the CLIP towers present (te3 for SD3); Flux files use te2 or te3
        index = 1 + ("clip_l" in towers) + ("clip_g" in towers)
        indices = {2, 3} if index == 2 and "clip_l" in towers else {index}
        for name in _linear_like(towers["t5xxl"]):
            if name.startswith("transformer."):
                for i in indices:
                    names[f"lora_te{i}_" + name[len("transformer."):].replace(".", "_")] = (f"t5xxl.{name}.weight",
                                                                                           None)
    return names


def lora_modules(keys: Iterable[str]) -> set[str]:
    """The module names of a LoRA (``<module>.lora_down.weight`` or ``<module>.lora_A.weight`` keys)."""
    return {k[: -len(down)] for k in keys for _, down in _PAIRS if k.endswith(down)}


def _pair(keys: Mapping[str, Any], module: str) -> tuple[str, str] | None:
    """The (up, down) keys of one LoRA module, in whichever naming the file uses."""
    for up, down in _PAIRS:
        if module + up in keys and module + down in keys:
            return module + up, module + down
    return None


@dataclass
class LoraMatch:
    """Which LoRA modules fit a network: module -> (parameter, rows) for those whose name and shape fit;
    ``wrong_shape`` lists modules whose name exists but whose low-rank product has another shape."""

    matched: dict[str, LoraTarget] = field(default_factory=dict)
    wrong_shape: list[str] = field(default_factory=list)


def match_lora(lora_shapes: Mapping[str, Sequence[int]], names: Mapping[str, LoraTarget],
               param_shapes: Mapping[str, Sequence[int]]) -> LoraMatch:
    """Match a LoRA's modules to parameters by name and shape (works on header shapes alone)."""
    result = LoraMatch()
    for module in sorted(lora_modules(lora_shapes)):
        target = names.get(module)
        pair = _pair(lora_shapes, module)
        if target is None or pair is None or target[0] not in param_shapes:
            continue
        up, down = lora_shapes[pair[0]], lora_shapes[pair[1]]
        shape = list(param_shapes[target[0]])
        rows = target[1]
        if isinstance(rows, slice):
            shape[0] = len(range(*rows.indices(shape[0])))
        fan_in = 1
        for d in down[1:]:
            fan_in *= int(d)
        rest = 1
        for d in shape[1:]:
            rest *= int(d)
        if int(up[0]) == int(shape[0]) and fan_in == rest:
            result.matched[module] = target
        else:
            result.wrong_shape.append(module)
    return result


def _delta(sd: Mapping[str, torch.Tensor], module: str) -> Callable[[torch.Tensor], torch.Tensor]:
    pair = _pair(sd, module)
    assert pair is not None
    up, down = sd[pair[0]], sd[pair[1]]
    alpha = sd.get(module + ".alpha")
    rank = down.shape[0]
    scale = float(alpha) / rank if alpha is not None else 1.0
    mat = scale * (up.float().flatten(1) @ down.float().flatten(1))
    return lambda w: mat.to(w.device)


def _patches(sd: Mapping[str, torch.Tensor], names: Mapping[str, LoraTarget], module: nn.Module
             ) -> tuple[dict[str, Patch], LoraMatch]:
    params = {n: tuple(p.shape) for n, p in module.named_parameters()}
    match = match_lora({k: tuple(v.shape) for k, v in sd.items()}, names, params)
    patches: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {}
    for lora_module, (param, rows) in match.matched.items():
        delta = _delta(sd, lora_module)

        def patch(w: torch.Tensor, delta: Callable[[torch.Tensor], torch.Tensor] = delta,
                  rows: slice | str | None = rows) -> torch.Tensor:
            if rows is None:
                return delta(w).reshape(w.shape)
            if not isinstance(rows, slice):  # SWAP_HALVES: diffusers' (scale, shift) -> the network's (shift, scale)
                first, second = delta(w).reshape(w.shape).chunk(2, dim=0)
                return torch.cat([second, first], dim=0)
            out = torch.zeros_like(w)
            out[rows] = delta(w).reshape(out[rows].shape)
            return out

        patches.setdefault(param, []).append(patch)
    merged: dict[str, Patch] = {}
    for param, fns in patches.items():
        merged[param] = fns[0] if len(fns) == 1 else _summed(fns)
    return merged, match


def _summed(fns: list[Callable[[torch.Tensor], torch.Tensor]]) -> Callable[[torch.Tensor], torch.Tensor]:
    """One patch from several modules patching the same weight (e.g. bigG's q, k and v thirds)."""
    def patch(w: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(w)
        for f in fns:
            total = total + f(w)
        return total
    return patch


def model_lora_patches(model: ModelHandle, lora: Mapping[str, torch.Tensor]) -> dict[str, Patch]:
    """The LoRA's UNet patches for ``model`` (parameter name -> delta), for ``Patchable.add_patches``."""
    return _patches(lora, unet_lora_names(model), model.diffusion_model)[0]


def clip_lora_patches(clip: ClipHandle, lora: Mapping[str, torch.Tensor]) -> dict[str, Patch]:
    """The LoRA's text-encoder patches for ``clip`` (parameter name -> delta)."""
    return _patches(lora, clip_lora_names(clip), clip.encoders)[0]


def load_lora(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (.safetensors, or a weights-only pickle)."""
    sd, _ = read_state_dict(path)
    return sd


def apply_lora(model: ModelHandle | None, clip: ClipHandle | None, lora: Mapping[str, torch.Tensor],
               strength_model: float, strength_clip: float) -> tuple[Any, Any]:
    """Clones of ``model`` / ``clip`` carrying the LoRA (a handle passed as None stays None)."""
    new_model, new_clip, _ = apply_lora_with_report(model, clip, lora, strength_model, strength_clip)
    return new_model, new_clip


def apply_lora_with_report(model: ModelHandle | None, clip: ClipHandle | None, lora: Mapping[str, torch.Tensor],
                           strength_model: float, strength_clip: float) -> tuple[Any, Any, dict[str, Any]]:
    """``apply_lora`` plus a report: modules in the file, those matched on the UNet / text encoders (with the
    parameters they patch), those left unmatched or of the wrong shape. Raises ValueError when the LoRA
    matches nothing, or has UNet modules of which none fits this model (another family's LoRA)."""
    modules = lora_modules(lora)
    unet_modules = {m for m in modules if m.startswith(MODEL_PREFIXES)}
    used: set[str] = set()
    wrong: list[str] = []
    report: dict[str, Any] = {"modules_in_file": len(modules)}
    new_model = new_clip = None
    if model is not None:
        new_model = model.clone()
        patches, match = _patches(lora, unet_lora_names(model), model.diffusion_model)
        new_model.add_patches(patches, strength_model)
        used |= set(match.matched)
        wrong += match.wrong_shape
        report["unet_modules_patched"] = len(match.matched)
        report["unet_weights_patched"] = len(patches)
        if unet_modules and not match.matched:
            raise ValueError(
                f"LoRA matches none of this model's diffusion-model layers ({len(unet_modules)} UNet modules such as "
                f"{sorted(unet_modules)[:2]}; {len(match.wrong_shape)} have a known name but another shape). "
                f"Is it for a different model family than this {model.family.name} model?")
    if clip is not None:
        new_clip = clip.clone()
        patches, match = _patches(lora, clip_lora_names(clip), clip.encoders)
        new_clip.add_patches(patches, strength_clip)
        used |= set(match.matched)
        wrong += match.wrong_shape
        report["clip_modules_patched"] = len(match.matched)
        report["clip_weights_patched"] = len(patches)
    unknown = modules - used
    if clip is None:
        unknown = {m for m in unknown if not m.startswith("lora_te")}  # a model-only load ignores them
    if modules and not used:
        raise ValueError(f"LoRA matches none of this model's layers ({len(modules)} modules such as "
                         f"{sorted(modules)[:3]}); is it for a different model family?")
    report["matched_keys"] = sorted(used)
    report["unmatched_keys"] = sorted(unknown)
    report["wrong_shape_keys"] = sorted(wrong)
    return new_model, new_clip, report
