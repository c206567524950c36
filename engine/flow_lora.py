"""LoRA module names of the flow transformers (SD3.x MMDiT, Flux.1), in the layouts ComfyUI accepts.

* Loom / ComfyUI names: ``lora_unet_<name with _>`` (kohya, e.g. ``lora_unet_double_blocks_0_img_attn_qkv``) and
  ``diffusion_model.<name>``; Flux also ``diffusion_model.single_blocks.N.linear1_qkv`` (the q/k/v rows of linear1).
* diffusers names (``transformer_blocks.N.attn.to_q`` ...) under ``transformer.`` (diffusers / SimpleTuner),
  ``lora_transformer_`` (OneTrainer, with _) and ``lycoris_`` (with _); SD3 also ``base_model.model.``. diffusers
  splits fused layers: to_q / to_k / to_v (and Flux's proj_mlp) patch row ranges of ``qkv`` / ``linear1``, and
  ``norm_out`` (and SD3's last ``norm1_context``) hold the modulation's two halves in the other order.
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["flow_lora_names", "SWAP_HALVES"]

# a LoRA target whose delta has its two row halves swapped (diffusers' scale/shift vs the network's shift/scale)
SWAP_HALVES = "swap"

_QKV = ("q", "k", "v")
_MMDIT_BLOCK = {"attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
                "attn2.to_out.0": "x_block.attn2.proj", "norm1.linear": "x_block.adaLN_modulation.1",
                "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
                "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2"}
_MMDIT_TOP = {"context_embedder": "context_embedder", "pos_embed.proj": "x_embedder.proj",
              "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
              "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
              "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
              "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2", "proj_out": "final_layer.linear"}
_FLUX_DOUBLE = {"attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj", "norm1.linear": "img_mod.lin",
                "norm1_context.linear": "txt_mod.lin", "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
                "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2"}
_FLUX_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_FLUX_TOP = {"proj_out": "final_layer.linear", "x_embedder": "img_in", "context_embedder": "txt_in",
             "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
             "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
             "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
             "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
             "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
             "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer"}

Target = tuple[str, Any]  # (parameter, row slice / SWAP_HALVES / None)


def _thirds(names: dict[str, Target], diffusers: str, fused: str, width: int, keys: tuple[str, ...]) -> None:
    for j, key in enumerate(keys):
        names[f"{diffusers}{key}"] = (fused + ".weight", slice(j * width, (j + 1) * width))


def _mmdit_diffusers(net: Any) -> dict[str, Target]:
    c = net.config
    h = c.hidden_size
    names: dict[str, Target] = {k: (v + ".weight", None) for k, v in _MMDIT_TOP.items()}
    names["norm_out.linear"] = ("final_layer.adaLN_modulation.1.weight", SWAP_HALVES)
    for i in range(c.depth):
        src, dst = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        _thirds(names, src + "attn.to_", dst + "x_block.attn.qkv", h, _QKV)
        _thirds(names, src + "attn.add_", dst + "context_block.attn.qkv", h, ("q_proj", "k_proj", "v_proj"))
        _thirds(names, src + "attn2.to_", dst + "x_block.attn2.qkv", h, _QKV)
        for a, b in _MMDIT_BLOCK.items():
            names[src + a] = (dst + b + ".weight", None)
        names[src + "norm1_context.linear"] = (dst + "context_block.adaLN_modulation.1.weight",
                                               SWAP_HALVES if i == c.depth - 1 else None)
    return names


def _flux_diffusers(net: Any) -> dict[str, Target]:
    c = net.config
    h = c.hidden_size
    names: dict[str, Target] = {k: (v + ".weight", None) for k, v in _FLUX_TOP.items()}
    names["norm_out.linear"] = ("final_layer.adaLN_modulation.1.weight", SWAP_HALVES)
    for i in range(c.depth):
        src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        _thirds(names, src + "attn.to_", dst + "img_attn.qkv", h, _QKV)
        _thirds(names, src + "attn.add_", dst + "txt_attn.qkv", h, ("q_proj", "k_proj", "v_proj"))
        for a, b in _FLUX_DOUBLE.items():
            names[src + a] = (dst + b + ".weight", None)
    for i in range(c.depth_single_blocks):
        src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        _thirds(names, src + "attn.to_", dst + "linear1", h, _QKV)
        names[src + "proj_mlp"] = (dst + "linear1.weight", slice(3 * h, 3 * h + int(h * c.mlp_ratio)))
        for a, b in _FLUX_SINGLE.items():
            names[src + a] = (dst + b + ".weight", None)
    return names


def flow_lora_names(net: nn.Module, arch: str) -> dict[str, Target]:
    """LoRA module name (every accepted layout) -> (parameter, rows) for an MMDiT ("mmdit") or Flux ("flux")."""
    params = {n for n, _ in net.named_parameters()}
    names: dict[str, Target] = {}
    for module_name, module in net.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            names["lora_unet_" + module_name.replace(".", "_")] = (module_name + ".weight", None)
            names["diffusion_model." + module_name] = (module_name + ".weight", None)
    if arch == "flux":
        config: Any = net.config
        h = int(config.hidden_size)
        for i in range(int(config.depth_single_blocks)):
            names[f"diffusion_model.single_blocks.{i}.linear1_qkv"] = (f"single_blocks.{i}.linear1.weight",
                                                                       slice(0, 3 * h))
    diffusers = _flux_diffusers(net) if arch == "flux" else _mmdit_diffusers(net)
    prefixes = ("transformer.",) + (("base_model.model.",) if arch == "mmdit" else ())
    for name, target in diffusers.items():
        if target[0] not in params:  # e.g. SD3's last context block has no projection / MLP
            continue
        for prefix in prefixes:
            names[prefix + name] = target
        underscored = name.replace(".", "_")
        names["lora_transformer_" + underscored] = target
        names["lycoris_" + underscored] = target
    return names
