"""Module names of the LDM UNet in diffusers' layout (down_blocks / mid_block / up_blocks).

LoRA files name the modules they patch in either layout (kohya SD1 files use diffusers paths, SDXL files
the LDM/SGM paths); this map lets one loader read both.
"""
from __future__ import annotations

from engine.networks.unet import UNetConfig

__all__ = ["ldm_to_diffusers_modules"]

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _blocks(cfg: UNetConfig) -> dict[str, str]:
    """LDM block prefix -> diffusers block prefix."""
    out = {"input_blocks.0.0": "conv_in", "time_embed.0": "time_embedding.linear_1",
           "time_embed.2": "time_embedding.linear_2", "label_emb.0.0": "add_embedding.linear_1",
           "label_emb.0.2": "add_embedding.linear_2", "out.0": "conv_norm_out", "out.2": "conv_out",
           "middle_block.0": "mid_block.resnets.0", "middle_block.1": "mid_block.attentions.0",
           "middle_block.2": "mid_block.resnets.1"}
    n = 1
    levels = len(cfg.channel_mult)
    for level in range(levels):
        for j in range(cfg.num_res_blocks[level]):
            out[f"input_blocks.{n}.0"] = f"down_blocks.{level}.resnets.{j}"
            out[f"input_blocks.{n}.1"] = f"down_blocks.{level}.attentions.{j}"
            n += 1
        if level != levels - 1:
            out[f"input_blocks.{n}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            n += 1
    n = 0
    for up, level in enumerate(reversed(range(levels))):
        for j in range(cfg.num_res_blocks[level] + 1):
            out[f"output_blocks.{n}.0"] = f"up_blocks.{up}.resnets.{j}"
            out[f"output_blocks.{n}.1"] = f"up_blocks.{up}.attentions.{j}"
            if level and j == cfg.num_res_blocks[level]:
                for slot in (1, 2):  # the upsampler follows the attention when there is one
                    out[f"output_blocks.{n}.{slot}.conv"] = f"up_blocks.{up}.upsamplers.0.conv"
            n += 1
    return out


def ldm_to_diffusers_modules(cfg: UNetConfig, module_names: list[str]) -> dict[str, str]:
    """For each LDM module name given, its diffusers name (modules without a counterpart are left out)."""
    blocks = _blocks(cfg)
    result: dict[str, str] = {}
    for name in module_names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if head in blocks:
                rest = ".".join(parts[cut:])
                if blocks[head].split(".")[-2:-1] == ["resnets"] or ".resnets." in blocks[head]:
                    rest = _RESNET.get(rest, rest)
                result[name] = blocks[head] + ("." + rest if rest else "")
                break
    return result
