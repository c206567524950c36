"""Diffusers tensor names -> the single-file (LDM / CompVis) names Loom's networks use.

``unet_to_ldm`` maps a ``UNet2DConditionModel`` state dict (``down_blocks`` / ``mid_block`` / ``up_blocks``),
``vae_to_ldm`` an ``AutoencoderKL`` one. Block indices are counted from the keys themselves (resnets per level,
attention or not, down/up samplers), so any SD1.x / SD2.x / SDXL layout converts; the transformer internals keep
their names. VAE mid-block attention projections stored as [C, C] linears become [C, C, 1, 1] convolutions
([C, C, 1, 1, 1] in a VAE whose convolutions are 3-D).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from engine.errors import CheckpointError

__all__ = ["UNET_RESNET_NAMES", "UNET_TOP_NAMES", "unet_to_ldm", "vae_to_ldm"]

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
UNET_RESNET_NAMES = _UNET_RESNET  # diffusers -> ldm module names of a ResBlock's layers
UNET_TOP_NAMES = _UNET_TOP  # diffusers -> ldm module names outside the blocks
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
             "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_BLOCK = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)$")
_MID = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$")


def _levels(keys: list[str], kind: str) -> dict[int, dict[str, int]]:
    """Per block index of ``kind``: how many resnets / attentions / samplers it has."""
    out: dict[int, dict[str, int]] = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m and m.group(1) == kind:
            part = out.setdefault(int(m.group(2)), {})
            part[m.group(3)] = max(part.get(m.group(3), 0), int(m.group(4)) + 1)
    return out


def _resnet(rest: str) -> str:
    for d, ours in _UNET_RESNET.items():
        if rest.startswith(d + "."):
            return ours + rest[len(d):]
    return rest


def unet_to_ldm(sd: Mapping[str, torch.Tensor], source: str = "unet") -> dict[str, torch.Tensor]:
    """A diffusers UNet's tensors under the single-file UNet names (no ``model.diffusion_model.`` prefix)."""
    keys = list(sd)
    down, up = _levels(keys, "down_blocks"), _levels(keys, "up_blocks")
    if not down or not up:
        raise CheckpointError(f"{source}: not a diffusers UNet (no down_blocks / up_blocks keys)")
    names: dict[tuple[str, int, str, int], str] = {}
    index = 1
    for i in sorted(down):
        part = down[i]
        for j in range(part.get("resnets", 0)):
            names[("down_blocks", i, "resnets", j)] = f"input_blocks.{index}.0"
            names[("down_blocks", i, "attentions", j)] = f"input_blocks.{index}.1"
            index += 1
        if part.get("downsamplers"):
            names[("down_blocks", i, "downsamplers", 0)] = f"input_blocks.{index}.0.op"
            index += 1
    index = 0
    for i in sorted(up):
        part = up[i]
        n = part.get("resnets", 0)
        for j in range(n):
            names[("up_blocks", i, "resnets", j)] = f"output_blocks.{index}.0"
            names[("up_blocks", i, "attentions", j)] = f"output_blocks.{index}.1"
            if j == n - 1 and part.get("upsamplers"):
                names[("up_blocks", i, "upsamplers", 0)] = f"output_blocks.{index}.{2 if part.get('attentions') else 1}"
            index += 1
    mid_attn = any(k.startswith("mid_block.attentions.") for k in keys)
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, t in sd.items():
        m = _BLOCK.match(key)
        mid = _MID.match(key)
        top = next((ours + key[len(d):] for d, ours in _UNET_TOP.items() if key.startswith(d + ".")), None)
        if top is not None:
            out[top] = t
        elif m is not None and (m.group(1), int(m.group(2)), m.group(3), int(m.group(4))) in names:
            base = names[(m.group(1), int(m.group(2)), m.group(3), int(m.group(4)))]
            rest = m.group(5)
            if m.group(3) == "resnets":
                rest = _resnet(rest)
            elif m.group(3) in ("downsamplers", "upsamplers"):
                rest = rest.removeprefix("conv.") if m.group(3) == "downsamplers" else rest
            out[f"{base}.{rest}"] = t
        elif mid is not None:
            j = int(mid.group(2))
            if mid.group(1) == "attentions":
                out[f"middle_block.1.{mid.group(3)}"] = t
            else:
                out[f"middle_block.{j * (2 if mid_attn else 1)}.{_resnet(mid.group(3))}"] = t
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} diffusers UNet tensors have no single-file equivalent "
                              f"(for example {unknown[:3]}); this UNet variant is not supported")
    return out


def vae_to_ldm(sd: Mapping[str, torch.Tensor], source: str = "vae",
               keep_unknown: bool = False) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL's tensors under the single-file VAE names (no ``first_stage_model.`` prefix).

    A tensor with no single-file name raises, or with ``keep_unknown`` keeps its name (ComfyUI's converter does)."""
    ups = {int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    if not ups:
        raise CheckpointError(f"{source}: not a diffusers AutoencoderKL (no decoder.up_blocks keys)")
    last = max(ups)
    conv_in = sd.get("encoder.conv_in.weight", sd.get("decoder.conv_in.weight"))
    spatial = conv_in.ndim - 2 if conv_in is not None and conv_in.ndim == 5 else 2
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, t in sd.items():
        new = _vae_name(key, last)
        if new is None:
            unknown.append(key)
            if keep_unknown:
                out[key] = t
            continue
        if ".mid.attn_1." in new and new.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")) \
                and t.ndim == 2:
            t = t.reshape(*t.shape, *(1,) * spatial)
        out[new] = t
    if unknown and not keep_unknown:
        raise CheckpointError(f"{source}: {len(unknown)} diffusers VAE tensors have no single-file equivalent "
                              f"(for example {unknown[:3]})")
    return out


def _vae_name(key: str, last_up: int) -> str | None:
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    m = re.match(r"^(encoder|decoder)\.(.+)$", key)
    if m is None:
        return None
    side, rest = m.group(1), m.group(2)
    for d, ours in (("conv_in.", "conv_in."), ("conv_out.", "conv_out."), ("conv_norm_out.", "norm_out.")):
        if rest.startswith(d):
            return f"{side}.{ours}{rest[len(d):]}"
    b = re.match(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)$", rest)
    if b is not None:
        level = int(b.group(2)) if b.group(1) == "down_blocks" else last_up - int(b.group(2))
        where = "down" if b.group(1) == "down_blocks" else "up"
        tail = b.group(5).replace("conv_shortcut", "nin_shortcut")
        if b.group(4) is not None:
            return f"{side}.{where}.{level}.block.{b.group(4)}.{tail}"
        return f"{side}.{where}.{level}.{'downsample' if where == 'down' else 'upsample'}.{tail}"
    r = re.match(r"^mid_block\.resnets\.(\d+)\.(.+)$", rest)
    if r is not None:
        return f"{side}.mid.block_{int(r.group(1)) + 1}.{r.group(2).replace('conv_shortcut', 'nin_shortcut')}"
    a = re.match(r"^mid_block\.attentions\.0\.(.+)\.(weight|bias)$", rest)
    if a is not None and a.group(1) in _VAE_ATTN:
        return f"{side}.mid.attn_1.{_VAE_ATTN[a.group(1)]}.{a.group(2)}"
    return None
