# mypy: disable-error-code="attr-defined,no-any-return"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""The LDM / SGM UNet (openaimodel layout) used by SD1.x, SD2.x and SDXL.

Module attribute names follow the checkpoint keys under ``model.diffusion_model.`` (``input_blocks``,
``middle_block``, ``output_blocks``, ``time_embed``, ``label_emb``, ``out``) so a state dict loads as is.
"""
from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.attention import SpatialTransformer
from engine.networks.configs import UNetConfig as UNetConfig  # torch-free home; re-exported here
from engine.networks.ops import ManualCast, Plain

# Output positions (batch x height x width) up to which a CPU conv runs as an im2col GEMM (see ``conv``), and
# the size (floats) of the im2col blocks it builds: channel chunks of ~8 MiB are reused from the heap.
GEMM_CONV_MAX_POSITIONS = 512
GEMM_CONV_CHUNK_FLOATS = 1 << 21
_PLAIN_CONV_FORWARDS = (nn.Conv2d.forward, ManualCast.Conv2d.forward)


def conv(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a Conv2d; on CPU, a fp32 k x k conv with few output positions runs as one GEMM.

    oneDNN reorders an NCHW weight into its blocked layout on every call. With few output positions (SD's
    8x8 and 4x4 levels at 1280-2560 channels, batch 2) that reorder costs more than the convolution itself:
    1280 -> 1280 channels on 4x4 took 77 ms through F.conv2d and 19 ms as ``W[o, c*k*k] @ cols`` (1 thread).
    Same weights and products, only the summation order differs (~5e-6 relative per layer, fp32 noise).
    Anything else (GPU, other dtypes, strided / grouped / dilated / padded-mode convs, hooked or custom
    layers, large maps where oneDNN is faster) goes through ``layer(x)``.
    """
    w = getattr(layer, "weight", None)
    bias = getattr(layer, "bias", None)
    if (x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or w is None
            or w.dtype != x.dtype or w.device != x.device or w.dim() != 4
            or (bias is not None and (bias.dtype != x.dtype or bias.device != x.device))
            or getattr(type(layer), "forward", None) not in _PLAIN_CONV_FORWARDS
            or layer._forward_hooks or layer._forward_pre_hooks
            or layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros"
            or not isinstance(layer.padding, tuple)):
        return layer(x)
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    conv2d = cast(nn.Conv2d, layer)
    (sh, sw), (ph, pw) = conv2d.stride, cast(tuple[int, int], conv2d.padding)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    if kh * kw == 1 or n * ho * wo > GEMM_CONV_MAX_POSITIONS or ho <= 0 or wo <= 0:
        return layer(x)
    patches = F.pad(x, (pw, pw, ph, ph)).unfold(2, kh, sh).unfold(3, kw, sw)  # [n, c, ho, wo, kh, kw] view
    positions, taps = n * ho * wo, kh * kw
    step = max(1, GEMM_CONV_CHUNK_FLOATS // (taps * positions))
    wm = w.reshape(o, -1)
    out: torch.Tensor | None = None
    for c0 in range(0, x.shape[1], step):
        cols = patches[:, c0:c0 + step].permute(1, 4, 5, 0, 2, 3).reshape(-1, positions)  # [c*kh*kw, n*ho*wo]
        wc = wm[:, c0 * taps:(c0 + step) * taps]
        if out is not None:
            out.addmm_(wc, cols)
        elif bias is None:
            out = torch.mm(wc, cols)
        else:
            out = torch.addmm(bias[:, None], wc, cols)  # [o, n*ho*wo]
    assert out is not None
    return out.view(o, n, ho, wo).transpose(0, 1).contiguous()


def _sequential(seq: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``seq(x)`` with its convolutions through ``conv``."""
    if type(seq) is not nn.Sequential or seq._forward_hooks or seq._forward_pre_hooks:
        return seq(x)
    for layer in seq:
        x = conv(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)
    return x


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, cos half first (LDM convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that hands the time embedding to ResBlocks and the context to transformers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,  # type: ignore[override]
                transformer_options: dict[str, Any] | None = None,
                output_shape: tuple[int, ...] | None = None) -> torch.Tensor:
        for layer in self:
            x = _layer_forward(layer, x, emb, context, transformer_options, output_shape)
        return x


def _layer_forward(layer: nn.Module, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None,
                   transformer_options: dict[str, Any] | None, output_shape: tuple[int, ...] | None) -> torch.Tensor:
    """One layer of a UNet block (ComfyUI's forward_timestep_embed): the time embedding to ResBlocks, context and
    options to transformers (counting ``transformer_index``), the skip size to Upsample. Any other layer goes to
    the first ``patches["forward_timestep_embed_patch"]`` entry ``(layer_type, handler)`` it is an instance of:
    ``handler(layer, x, emb, context, transformer_options, output_shape, time_context, num_video_frames,
    image_only_indicator)`` (the last three None here)."""
    if isinstance(layer, ResBlock):
        return layer(x, emb)
    if isinstance(layer, SpatialTransformer):
        if transformer_options is None:
            return layer(x, context)
        x = layer(x, context, transformer_options)
        if "transformer_index" in transformer_options:
            transformer_options["transformer_index"] += 1
        return x
    if isinstance(layer, Upsample):
        return layer(x, output_shape)
    if transformer_options is not None:
        for layer_type, handler in (transformer_options.get("patches") or {}).get("forward_timestep_embed_patch", ()):
            if isinstance(layer, layer_type):
                return handler(layer, x, emb, context, transformer_options, output_shape, None, None, None)
    return conv(layer, x) if isinstance(layer, nn.Conv2d) else layer(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the time embedding added in between; 1x1 skip iff channels differ."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dtype: torch.dtype | None = None,
                 device: Any = None, operations: Any = Plain) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.in_layers = nn.Sequential(
            operations.GroupNorm(32, channels, **kw), nn.SiLU(),
            operations.Conv2d(channels, out_channels, 3, padding=1, **kw),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), operations.Linear(emb_channels, out_channels, **kw))
        self.out_layers = nn.Sequential(
            operations.GroupNorm(32, out_channels, **kw), nn.SiLU(), nn.Dropout(0.0),
            operations.Conv2d(out_channels, out_channels, 3, padding=1, **kw),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else operations.Conv2d(channels, out_channels, 1, **kw)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = _sequential(self.in_layers, x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return conv(self.skip_connection, x) + _sequential(self.out_layers, h)


class Downsample(nn.Module):
    """Stride-2 3x3 conv (key ``op``)."""

    def __init__(self, channels: int, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.op = operations.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(self.op, x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv; ``output_shape`` lets odd sizes match the skip tensor."""

    def __init__(self, channels: int, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, output_shape: tuple[int, int] | None = None) -> torch.Tensor:
        size = output_shape if output_shape is not None else (x.shape[2] * 2, x.shape[3] * 2)
        return conv(self.conv, F.interpolate(x, size=size, mode="nearest"))


def build_encoder(module: nn.Module, c: UNetConfig, dtype: torch.dtype | None = None, device: Any = None,
                  operations: Any = Plain) -> list[int]:
    """Give ``module`` the UNet's ``time_embed``, ``label_emb``, ``input_blocks`` and ``middle_block``.

    Shared by the UNet and the ControlNet (a copy of the UNet's encoder); returns the channels of each input
    block's output (the skip connections, in order).
    """
    kw: dict[str, Any] = {"dtype": dtype, "device": device, "operations": operations}
    if len(c.num_res_blocks) != len(c.channel_mult):
        raise ValueError(f"UNetConfig: num_res_blocks {c.num_res_blocks} must have one entry per "
                         f"channel_mult level {c.channel_mult}")
    mc = c.model_channels
    ted = mc * 4
    module.time_embed = nn.Sequential(
        operations.Linear(mc, ted, dtype=dtype, device=device), nn.SiLU(),
        operations.Linear(ted, ted, dtype=dtype, device=device),
    )
    if c.num_classes == "sequential":
        if c.adm_in_channels is None:
            raise ValueError("UNetConfig: num_classes='sequential' needs adm_in_channels")
        module.label_emb = nn.Sequential(nn.Sequential(
            operations.Linear(c.adm_in_channels, ted, dtype=dtype, device=device), nn.SiLU(),
            operations.Linear(ted, ted, dtype=dtype, device=device),
        ))
    elif isinstance(c.num_classes, int):
        module.label_emb = nn.Embedding(c.num_classes, ted, dtype=dtype, device=device)
    depth_in = list(c.transformer_depth)

    def attn(ch: int, depth: int) -> SpatialTransformer:
        heads, dim_head = c.heads_for(ch)
        return SpatialTransformer(ch, heads, dim_head, depth, c.context_dim, c.use_linear_in_transformer, **kw)

    module.input_blocks = nn.ModuleList([TimestepEmbedSequential(
        operations.Conv2d(c.in_channels, mc, 3, padding=1, dtype=dtype, device=device))])
    skip_chans = [mc]
    ch = mc
    for level, mult in enumerate(c.channel_mult):
        for _ in range(c.num_res_blocks[level]):
            layers: list[nn.Module] = [ResBlock(ch, ted, mult * mc, **kw)]
            ch = mult * mc
            depth = depth_in.pop(0)
            if depth > 0:
                layers.append(attn(ch, depth))
            module.input_blocks.append(TimestepEmbedSequential(*layers))
            skip_chans.append(ch)
        if level != len(c.channel_mult) - 1:
            module.input_blocks.append(TimestepEmbedSequential(Downsample(ch, **kw)))
            skip_chans.append(ch)

    mid: list[nn.Module] = [ResBlock(ch, ted, ch, **kw)]
    if c.transformer_depth_middle >= 0:
        mid += [attn(ch, c.transformer_depth_middle), ResBlock(ch, ted, ch, **kw)]
    middle = TimestepEmbedSequential(*mid) if c.transformer_depth_middle >= -1 else None
    module.middle_block = middle  # type: ignore[assignment]
    return skip_chans


def _add_control(h: torch.Tensor, control: dict[str, list[Any]] | None, name: str, index: int) -> torch.Tensor:
    """``h`` plus the control residual ``control[name]`` holds for this position (ComfyUI pops these lists
    from the end, so position ``index`` counted from the end); unchanged when there is none."""
    if not control:
        return h
    items = control.get(name) or []
    pos = len(items) - 1 - index
    if pos < 0 or items[pos] is None:
        return h
    return h + items[pos].to(h.dtype)


class UNetModel(nn.Module):
    """Noise-prediction UNet. forward(x, timesteps, context, y=None) -> model output (eps or v).

    Parameters: config: UNetConfig; dtype/device: where parameters are created;
    operations: layer factory (engine.networks.ops.Plain or ManualCast).
    """

    time_embed: nn.Sequential
    label_emb: nn.Module
    input_blocks: nn.ModuleList
    middle_block: TimestepEmbedSequential | None

    def __init__(self, config: UNetConfig, dtype: torch.dtype | None = None, device: Any = None,
                 operations: Any = Plain) -> None:
        super().__init__()
        c = config
        self.config = c
        self.dtype = dtype or torch.float32
        kw: dict[str, Any] = {"dtype": dtype, "device": device, "operations": operations}
        skip_chans = build_encoder(self, c, dtype, device, operations)
        mc, ted, ch = c.model_channels, c.model_channels * 4, skip_chans[-1]
        depth_out = list(c.transformer_depth_output)

        def attn(ch: int, depth: int) -> SpatialTransformer:
            heads, dim_head = c.heads_for(ch)
            return SpatialTransformer(ch, heads, dim_head, depth, c.context_dim, c.use_linear_in_transformer, **kw)

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks[level] + 1):
                layers: list[nn.Module] = [ResBlock(ch + skip_chans.pop(), ted, mc * mult, **kw)]
                ch = mc * mult
                depth = depth_out.pop() if depth_out else 0
                if depth > 0:
                    layers.append(attn(ch, depth))
                if level and i == c.num_res_blocks[level]:
                    layers.append(Upsample(ch, **kw))
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            operations.GroupNorm(32, ch, dtype=dtype, device=device), nn.SiLU(),
            operations.Conv2d(mc, c.out_channels, 3, padding=1, dtype=dtype, device=device),
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, control: dict[str, list[Any]] | None = None,
                transformer_options: dict[str, Any] | None = None, **_: Any) -> torch.Tensor:
        """Predict the model output for latents ``x`` at integer/fractional ``timesteps``.

        ``control``: adapter residuals as ComfyUI passes them (``input`` added after input blocks, ``middle``
        after the middle block, ``output`` to the skip connections; each list consumed from its end).
        ``transformer_options``: ComfyUI's patch dict (a copy is used): ``block`` / ``transformer_index`` /
        ``original_shape`` are set here for the attention patches (``engine.networks.attention``);
        ``patches`` may hold ``emb_patch`` (``p(emb, model_channels, options) -> emb``, before the ADM / class
        embedding is added), ``input_block_patch``, ``input_block_patch_after_skip`` (``p(h, options) -> h``),
        ``output_block_patch`` (``p(h, skip, options) -> (h, skip)``) and ``forward_timestep_embed_patch``
        (``_layer_forward``).
        """
        c = self.config
        to = None if transformer_options is None else dict(transformer_options)
        patches: dict[str, list[Any]] = {}
        if to is not None:
            to["original_shape"] = list(x.shape)
            to["transformer_index"] = 0
            patches = to.get("patches") or {}
        emb = self.time_embed(timestep_embedding(timesteps, c.model_channels).to(x.dtype))
        for p in patches.get("emb_patch", ()):
            emb = p(emb, c.model_channels, to)
        if c.num_classes is not None:
            if y is None:
                raise ValueError("UNetModel: this model is class/ADM-conditioned (num_classes set); pass y")
            emb = emb + self.label_emb(y.to(x.dtype) if c.num_classes == "sequential" else y)
        skips: list[torch.Tensor] = []
        h = x
        for i, block in enumerate(self.input_blocks):
            if to is not None:
                to["block"] = ("input", i)
            h = _add_control(block(h, emb, context, to), control, "input", i)
            for p in patches.get("input_block_patch", ()):
                h = p(h, to)
            skips.append(h)
            for p in patches.get("input_block_patch_after_skip", ()):
                h = p(h, to)
        if to is not None:
            to["block"] = ("middle", 0)
        if self.middle_block is not None:
            h = self.middle_block(h, emb, context, to)
        h = _add_control(h, control, "middle", 0)
        for i, block in enumerate(self.output_blocks):
            if to is not None:
                to["block"] = ("output", i)
            skip = _add_control(skips.pop(), control, "output", i)
            for p in patches.get("output_block_patch", ()):
                h, skip = p(h, skip, to)
            h = torch.cat([h, skip], dim=1)
            target = tuple(skips[-1].shape[2:]) if skips else None
            h = block(h, emb, context, to, target)
        return _sequential(self.out, h)
