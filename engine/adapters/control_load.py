"""Loading ControlNet and T2I-Adapter files into ``ControlHandle``s (ComfyUI's CONTROL_NET).

``load_control(path, manager, model=None)`` reads the file (memory-mapped safetensors or a weights-only
pickle), recognises its layout and family (``engine.adapters.detect``), renames diffusers / ControlNet 1.0
keys to the cldm names, builds the network on the meta device and assigns the weights (upcast to the
compute dtype), once per unchanged file. A diff ControlNet (``difference`` key) needs ``model``: the
model's UNet weights (with its LoRA patches) are added to the matching ControlNet weights, as ComfyUI's
DiffControlNetLoader does; the result is cached per file, model and set of patches.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.adapters.control import ControlHandle
from engine.adapters.detect import (
    LAYOUT_DIFFUSERS,
    LAYOUT_V10,
    V10_PREFIX,
    ControlNetConfig,
    ControlSpec,
    control_family,
    detect_t2i,
    from_diffusers_t2i,
)
from engine.adapters.networks import ControlNet, build_t2i
from engine.detect import detect_unet, metadata_config
from engine.errors import CheckpointError, UnknownModelError
from engine.model_management import ModelManager, file_cache_key
from engine.networks.configs import UNetConfig
from engine.state_files import read_shapes, read_state_dict
from engine.unet_names import ldm_to_diffusers_modules

__all__ = ["load_control", "to_cldm_keys", "control_net_config"]

_RESNET_PARTS = ("in_layers.0", "in_layers.2", "emb_layers.1", "out_layers.0", "out_layers.3", "skip_connection")
_HINT_CONVS = 8  # cldm's input_hint_block: convs at 0, 2, ..., 14


def _count(keys: Any, prefix: str) -> int:
    found = {k[len(prefix):].split(".", 1)[0] for k in keys if k.startswith(prefix)}
    return len({f for f in found if f.isdecimal()})


def _diffusers_names(keys: list[str]) -> dict[str, str]:
    """diffusers module name -> cldm module name for the UNet encoder part of a diffusers ControlNetModel."""
    levels = _count(keys, "down_blocks.")
    res = tuple(_count(keys, f"down_blocks.{lv}.resnets.") for lv in range(levels))
    shape_only = UNetConfig(channel_mult=(1,) * levels, num_res_blocks=res)  # the names depend on these only
    candidates = ["time_embed.0", "time_embed.2", "label_emb.0.0", "label_emb.0.2", "input_blocks.0.0",
                  "middle_block.1"]
    candidates += [f"middle_block.{i}.{p}" for i in (0, 2) for p in _RESNET_PARTS]
    for n in range(1, sum(res) + levels):
        candidates += [f"input_blocks.{n}.0.{p}" for p in _RESNET_PARTS]
        candidates += [f"input_blocks.{n}.1", f"input_blocks.{n}.0.op"]
    return {d: ldm for ldm, d in ldm_to_diffusers_modules(shape_only, candidates).items()}


def _diffusers_extra(key: str) -> str | None:
    """cldm name of a ControlNet-only diffusers key (zero convs, mid block out, hint embedding)."""
    parts = key.split(".")
    if parts[0] == "controlnet_down_blocks":
        return f"zero_convs.{parts[1]}.0.{parts[2]}"
    if parts[0] == "controlnet_mid_block":
        return f"middle_block_out.0.{parts[1]}"
    if parts[0] == "controlnet_cond_embedding":
        if parts[1] == "conv_in":
            return f"input_hint_block.0.{parts[2]}"
        if parts[1] == "conv_out":
            return f"input_hint_block.14.{parts[2]}"
        if parts[1] == "blocks":
            return f"input_hint_block.{2 * int(parts[2]) + 2}.{parts[3]}"
    return None


def to_cldm_keys(sd: Mapping[str, Any], layout: str, source: str = "control file") -> dict[str, Any]:
    """The ControlNet tensors under cldm names (ControlNet 1.0 prefix stripped, DDPM buffers dropped;
    diffusers names mapped as ComfyUI maps them)."""
    if layout == LAYOUT_V10:
        return {k[len(V10_PREFIX):]: v for k, v in sd.items() if k.startswith(V10_PREFIX)}
    if layout != LAYOUT_DIFFUSERS:
        return dict(sd)
    names = _diffusers_names(list(sd))
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        new = _diffusers_extra(key)
        if new is None:
            parts = key.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                head = ".".join(parts[:cut])
                if head in names:
                    new = names[head] + "." + ".".join(parts[cut:])
                    break
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise UnknownModelError(f"{source}: diffusers ControlNet keys without a cldm counterpart: "
                                f"{', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    return out


def control_net_config(shapes: Mapping[str, Any], spec: ControlSpec, metadata: Mapping[str, str] | None,
                       source: str = "control file") -> ControlNetConfig:
    """ControlNet config from cldm-named shapes: the encoder by ``engine.detect.detect_unet`` (heads from
    the metadata, else the family), hint channels and hint-block widths from the hint convs."""
    heads = metadata_config(metadata).get("unet")
    try:
        unet = detect_unet(shapes, "", heads, spec.family)
        widths = tuple(int(shapes[f"input_hint_block.{2 * i}.weight"][0]) for i in range(_HINT_CONVS - 1))
        hint = int(shapes["input_hint_block.0.weight"][1])
    except (KeyError, IndexError) as exc:
        raise UnknownModelError(f"{source}: {spec.layout} ControlNet without the expected tensor {exc}") from exc
    return ControlNetConfig(unet=unet, hint_channels=hint, hint_widths=widths)


def _add_model_weights(sd: dict[str, torch.Tensor], model: Any) -> dict[str, torch.Tensor]:
    """Diff ControlNet: ControlNet weight + the model's UNet weight of the same name, as the model runs it (its
    LoRA / weight patches applied), added in the ControlNet tensor's dtype, as ComfyUI's DiffControlNetLoader
    adds the loaded model's state dict."""
    base = model.patched_state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        w = base.get(k)
        out[k] = v + w.to(device=v.device, dtype=v.dtype) if w is not None and w.shape == v.shape else v
    return out


def _build(path: Path, manager: ModelManager, model: Any) -> ControlHandle:
    raw, metadata = read_state_dict(path)
    raw = from_diffusers_t2i(raw)
    spec = control_family(read_shapes(raw), path.name)
    dtype = manager.policy.unet_dtype
    module: nn.Module
    if spec.is_t2i:
        cfg = detect_t2i(read_shapes(raw), spec.layout)
        with torch.device("meta"):
            module = build_t2i(cfg)
        sd = dict(raw)
        config: Any = cfg
    else:
        sd = to_cldm_keys(raw, spec.layout, path.name)
        sd.pop("difference", None)
        if spec.diff:
            if model is None:
                raise CheckpointError(f"{path.name} is a diff ControlNet ('difference' key): load it with "
                                      "DiffControlNetLoader, which adds the model's weights")
            sd = _add_model_weights(sd, model)
        config = control_net_config(read_shapes(sd), spec, metadata, path.name)
        with torch.device("meta"):
            module = ControlNet(config)
    try:
        module.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        details = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip())[:400]
        raise UnknownModelError(f"{path.name}: detected a {spec.family.name} {spec.layout} file but its tensors do "
                                f"not fit that network: {details}") from exc
    entry = manager.register(module.eval(), path.name, "controlnet")
    return ControlHandle(module, entry, manager, spec, config, path.name)


def load_control(path: str | os.PathLike[str], manager: ModelManager, model: Any = None) -> ControlHandle:
    """Load (once per unchanged file, and per model for a diff ControlNet) a ControlNet / T2I-Adapter."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"control file not found: {p}. Put it in models/controlnet or models/t2i_adapter")
    diff = "difference" in read_state_dict(p)[0]  # a header read (memory-mapped)
    extra = (id(model.diffusion_model), model.patch_signature()) if diff and model is not None else None
    handle: ControlHandle = manager.cached(file_cache_key("controlnet", p, extra),
                                           lambda: _build(p, manager, model if diff else None))
    return handle.copy()
