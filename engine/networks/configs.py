"""Network hyper-parameter dataclasses, torch-free.

Validation and family detection read these from checkpoint headers before any network is built, so the
server can check a prompt without importing torch. The network modules re-export them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a UNet; everything but heads is readable from checkpoint shapes.

    transformer_depth: per input res block (len = sum(num_res_blocks)); transformer_depth_output: per output
    block in *input* level order (len = sum(num_res_blocks) + len(channel_mult)), consumed from the end; transformer_depth_middle: -1 = no middle
    transformer (-2 = no middle block at all); num_head_channels -1 means "use num_heads".
    adm_in_channels: width of the ``y`` vector (SDXL) when num_classes == "sequential".
    """

    model_channels: int = 320
    in_channels: int = 4
    out_channels: int = 4
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    transformer_depth: tuple[int, ...] = (1, 1, 1, 1, 1, 1, 0, 0)
    transformer_depth_output: tuple[int, ...] = (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0)
    transformer_depth_middle: int = 1
    context_dim: int = 768
    num_heads: int = 8
    num_head_channels: int = -1
    use_linear_in_transformer: bool = False
    num_classes: str | int | None = None
    adm_in_channels: int | None = None

    def heads_for(self, ch: int) -> tuple[int, int]:
        """(heads, dim_head) of an attention layer at ``ch`` channels."""
        if self.num_head_channels == -1:
            return self.num_heads, ch // self.num_heads
        return ch // self.num_head_channels, self.num_head_channels


@dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of an AutoencoderKL (all readable from checkpoint shapes)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3
    quant_conv: bool = True  # the SD3 / Flux 16-channel VAEs have no quant_conv / post_quant_conv

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along each axis."""
        return int(2 ** (len(self.ch_mult) - 1))


@dataclass(frozen=True)
class ClipTextConfig:
    """CLIP text tower hyper-parameters (heads cannot be read from shapes: family default or metadata)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768


@dataclass(frozen=True)
class OpenClipConfig:
    """OpenCLIP text tower hyper-parameters (SD2's ViT-H, SDXL's bigG)."""

    vocab_size: int = 49408
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_width: int = 4096
    context_length: int = 77
    projection_dim: int = 1024
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class FluxConfig:
    """Hyper-parameters of a Flux.1 transformer (engine.detect_flow reads them from shapes).

    in_channels: latent channels (the patchified ``img_in`` input is in_channels * patch**2); context_dim:
    T5 width (``txt_in``); vec_in_dim: CLIP-L pooled width; axes_dim: RoPE split of head_dim over
    (text index, row, column); guidance_embed: dev (``guidance_in``) vs schnell.
    """

    in_channels: int = 16
    hidden_size: int = 3072
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    mlp_ratio: float = 4.0
    context_dim: int = 4096
    vec_in_dim: int = 768
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10000
    qkv_bias: bool = True
    guidance_embed: bool = True
    patch_size: int = 2


@dataclass(frozen=True)
class MMDiTConfig:
    """Hyper-parameters of an SD3 / SD3.5 MMDiT(-X) (engine.detect_flow reads them from shapes).

    hidden = 64 x depth and heads = depth (the SD3 rule); x_self_attn_layers: the MMDiT-X blocks with a second
    image-only attention (attn2); pos_embed_max: side of the learned position grid (centre-cropped per image).
    """

    in_channels: int = 16
    depth: int = 24
    patch_size: int = 2
    context_dim: int = 4096
    adm_in_channels: int = 2048
    mlp_ratio: float = 4.0
    pos_embed_max: int = 384
    x_self_attn_layers: tuple[int, ...] = ()
    qk_norm: bool = True

    @property
    def hidden_size(self) -> int:
        return 64 * self.depth

    @property
    def num_heads(self) -> int:
        return self.depth
