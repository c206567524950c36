"""Detection of the flow-matching transformers (Flux.1; SD3.5 MMDiT-X) from tensor names and shapes.

What shapes cannot tell follows the families2 conventions: Flux's RoPE split is
[head_dim / 8, 7 * head_dim / 16, 7 * head_dim / 16] (theta 10000); ``guidance_in`` present means dev
(ModelSamplingFlux, shift 1.15), absent means schnell (discrete flow, shift 1, multiplier 1).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.errors import UnknownModelError
from engine.families import FLUX_DEV, FLUX_SCHNELL, Family
from engine.networks.configs import FluxConfig

__all__ = ["FLUX_PROBE", "is_flux", "detect_flux", "flux_prefix"]

Shapes = Mapping[str, Sequence[int]]
FLUX_PROBE = "double_blocks.0.img_attn.norm.query_norm.scale"
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
