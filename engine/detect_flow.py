"""Detection of the flow-matching transformers (Flux.1; SD3.5 MMDiT-X) from tensor names and shapes.

What shapes cannot tell follows the families2 conventions: Flux's RoPE split is
[head_dim / 8, 7 * head_dim / 16, 7 * head_dim / 16] (theta 10000); ``guidance_in`` present means dev
(ModelSamplingFlux, shift 1.15), absent means schnell (discrete flow, shift 1, multiplier 1).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.errors import UnknownModelError
from engine.families import FLUX_DEV, FLUX_SCHNELL, SD35, Family
from engine.networks.configs import FluxConfig, MMDiTConfig

__all__ = ["FLUX_PROBE", "MMDIT_PROBE", "is_flux", "detect_flux", "flux_prefix", "mmdit_prefix", "detect_mmdit"]

Shapes = Mapping[str, Sequence[int]]
FLUX_PROBE = "double_blocks.0.img_attn.norm.query_norm.scale"
MMDIT_PROBE = "joint_blocks.0.x_block.attn.qkv.weight"
_FLUX_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.")


def flux_prefix(shapes: Shapes) -> str | None:
    """The prefix under which a file holds a Flux transformer (None: not a Flux file)."""
    return next((p for p in _FLUX_PREFIXES if p + FLUX_PROBE in shapes), None)


def is_flux(shapes: Shapes) -> bool:
    return flux_prefix(shapes) is not None


def _count(shapes: Shapes, prefix: str) -> int:
    found = {int(k[len(prefix):].split(".", 1)[0]) for k in shapes if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def detect_flux(shapes: Shapes, prefix: str = "", source: str = "model") -> tuple[Family, FluxConfig]:
    """Family (dev / schnell) and network config of a Flux transformer under ``prefix``."""
    try:
        hidden = int(shapes[prefix + "img_in.weight"][0])
        in_patched = int(shapes[prefix + "img_in.weight"][1])
        head_dim = int(shapes[prefix + FLUX_PROBE][0])
        mlp_hidden = int(shapes[prefix + "double_blocks.0.img_mlp.0.weight"][0])
        context = int(shapes[prefix + "txt_in.weight"][1])
        vec = int(shapes[prefix + "vector_in.in_layer.weight"][1])
    except KeyError as exc:
        raise UnknownModelError(f"{source}: Flux layout not recognised (missing {exc})") from exc
    if hidden % head_dim or head_dim % 16:
        raise UnknownModelError(f"{source}: Flux width {hidden} / head width {head_dim} is not a known layout")
    dev = prefix + "guidance_in.in_layer.weight" in shapes
    cfg = FluxConfig(
        in_channels=in_patched // 4, hidden_size=hidden, num_heads=hidden // head_dim,
        depth=_count(shapes, prefix + "double_blocks."), depth_single_blocks=_count(shapes, prefix + "single_blocks."),
        mlp_ratio=mlp_hidden / hidden, context_dim=context, vec_in_dim=vec,
        axes_dim=(head_dim // 8, 7 * head_dim // 16, 7 * head_dim // 16),
        qkv_bias=prefix + "double_blocks.0.img_attn.qkv.bias" in shapes, guidance_embed=dev,
    )
    return (FLUX_DEV if dev else FLUX_SCHNELL), cfg


def mmdit_prefix(shapes: Shapes) -> str | None:
    """The prefix under which a file holds an SD3 MMDiT (None: not an MMDiT file)."""
    return next((p for p in _FLUX_PREFIXES if p + MMDIT_PROBE in shapes), None)


def detect_mmdit(shapes: Shapes, prefix: str = "", source: str = "model") -> tuple[Family, MMDiTConfig]:
    """SD3 / SD3.5 MMDiT(-X) config: depth = x_embedder width / 64, attn2 layers, qk-norm, pos grid side."""
    try:
        proj = shapes[prefix + "x_embedder.proj.weight"]
        pos = shapes[prefix + "pos_embed"]
        ctx = shapes[prefix + "context_embedder.weight"]
        adm = shapes[prefix + "y_embedder.mlp.0.weight"]
        fc1 = shapes[prefix + "joint_blocks.0.x_block.mlp.fc1.weight"]
    except KeyError as exc:
        raise UnknownModelError(f"{source}: SD3 MMDiT layout not recognised (missing {exc})") from exc
    hidden = int(proj[0])
    if hidden % 64:
        raise UnknownModelError(f"{source}: MMDiT width {hidden} is not 64 x depth (the SD3 rule)")
    side = round(int(pos[1]) ** 0.5)
    if side * side != int(pos[1]):
        raise UnknownModelError(f"{source}: pos_embed holds {pos[1]} positions, not a square grid")
    depth = hidden // 64
    attn2 = tuple(i for i in range(depth) if f"{prefix}joint_blocks.{i}.x_block.attn2.qkv.weight" in shapes)
    cfg = MMDiTConfig(in_channels=int(proj[1]), depth=depth, patch_size=int(proj[2]), context_dim=int(ctx[1]),
                      adm_in_channels=int(adm[1]), mlp_ratio=int(fc1[0]) / hidden, pos_embed_max=side,
                      x_self_attn_layers=attn2,
                      qk_norm=prefix + "joint_blocks.0.x_block.attn.ln_q.weight" in shapes)
    return SD35, cfg
