"""The UNet parameter-name correspondences ComfyUI's `comfy.utils` exposes as tables (`UNET_MAP_RESNET`,
`UNET_MAP_ATTENTIONS`, `TRANSFORMER_BLOCKS`, `UNET_MAP_BASIC`), built from Loom's own diffusers -> ldm names
(`engine.diffusers_names`). Packs read them to rename diffusers-layout checkpoints of their own networks
(Advanced-ControlNet's SVD-ControlNet extends them at import)."""
from __future__ import annotations

from engine.diffusers_names import UNET_RESNET_NAMES, UNET_TOP_NAMES

__all__ = ["TRANSFORMER_BLOCKS", "UNET_MAP_ATTENTIONS", "UNET_MAP_BASIC", "UNET_MAP_RESNET"]

_PARAMS = ("weight", "bias")

# ldm name -> diffusers name of a ResBlock's parameters ("in_layers.2.weight" -> "conv1.weight")
UNET_MAP_RESNET: dict[str, str] = {f"{ldm}.{p}": f"{diffusers}.{p}"
                                   for diffusers, ldm in UNET_RESNET_NAMES.items() for p in _PARAMS}

# a SpatialTransformer's own parameters (the same names in both layouts)
UNET_MAP_ATTENTIONS: set[str] = {f"{layer}.{p}" for layer in ("proj_in", "proj_out", "norm") for p in _PARAMS}

# a BasicTransformerBlock's parameters (the same names in both layouts)
TRANSFORMER_BLOCKS: set[str] = (
    {f"norm{i}.{p}" for i in (1, 2, 3) for p in _PARAMS}
    | {f"attn{i}.to_{x}.weight" for i in (1, 2) for x in "qkv"}
    | {f"attn{i}.to_out.0.{p}" for i in (1, 2) for p in _PARAMS}
    | {f"ff.net.0.proj.{p}" for p in _PARAMS} | {f"ff.net.2.{p}" for p in _PARAMS}
)

# (ldm name, diffusers name) of the parameters outside the blocks
UNET_MAP_BASIC: set[tuple[str, str]] = {(f"{ldm}.{p}", f"{diffusers}.{p}")
                                        for diffusers, ldm in UNET_TOP_NAMES.items() for p in _PARAMS}
