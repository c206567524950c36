"""Which control file is this: layout, family and network config from tensor names and shapes (torch-free).

ControlNet layouts are checked in ComfyUI's order: ``controlnet_cond_embedding.conv_in.weight`` (diffusers),
``control_model.zero_convs.0.0.weight`` (ControlNet 1.0: strip ``control_model.``; a ``difference`` key marks
a diff ControlNet), ``zero_convs.0.0.weight`` (lllyasviel v1.1), then the T2I-Adapters: ``body.0.in_conv.weight``
(Adapter_light) and ``conv_in.weight`` (full Adapter); diffusers T2I-Adapters (``adapter.*``) are renamed to
those first (``from_diffusers_t2i``). Anything else fails naming what was found.

The family is read from the shapes: an ADM input (``label_emb`` / ``add_embedding``) means SDXL, a linear
``proj_in`` SD2.x, otherwise SD1.x; the context width is the cross-attention key width. Heads come from the
file's metadata config (``unet.num_heads`` / ``unet.num_head_channels``), else the family standard.
Validation uses ``control_family`` on a safetensors header before anything is loaded.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.errors import UnknownModelError
from engine.families import SD15, SD20, SDXL, Family

__all__ = ["ControlNetConfig", "T2IConfig", "ControlSpec", "control_layout", "control_family", "detect_t2i",
           "from_diffusers_t2i",
           "LAYOUT_DIFFUSERS", "LAYOUT_V10", "LAYOUT_V11", "LAYOUT_T2I_FULL", "LAYOUT_T2I_LIGHT"]

Shapes = Mapping[str, Sequence[int]]

LAYOUT_DIFFUSERS = "diffusers"
LAYOUT_V10 = "controlnet-1.0"
LAYOUT_V11 = "controlnet-1.1"
LAYOUT_T2I_FULL = "t2i-adapter"
LAYOUT_T2I_LIGHT = "t2i-adapter-light"
V10_PREFIX = "control_model."
_DIFFUSERS_T2I = "adapter."
T = TypeVar("T")


@dataclass(frozen=True)
class ControlNetConfig:
    """A ControlNet: the UNet encoder it copies (``engine.networks.configs.UNetConfig``), the hint channels
    and the widths of the hint block's convolutions (before the last one, which ends at model_channels)."""

    unet: Any
    hint_channels: int = 3
    hint_widths: tuple[int, ...] = (16, 16, 32, 32, 96, 96, 256)


@dataclass(frozen=True)
class T2IConfig:
    """A T2I-Adapter read from its keys: ``full`` (Adapter) or ``light`` (Adapter_light); channels per level,
    residual blocks per level, input channels after pixel-unshuffle, kernel size, skip convs, conv
    down-sampling, SDXL (16x16 unshuffle); ``inner``: the light adapter's extractor widths."""

    kind: str
    channels: tuple[int, ...]
    nums_rb: int
    cin: int
    ksize: int = 1
    skep: bool = False
    use_conv: bool = False
    xl: bool = False
    inner: tuple[int, ...] = ()

    @property
    def unshuffle(self) -> int:
        return 16 if self.xl else 8

    @property
    def hint_channels(self) -> int:
        return self.cin // (self.unshuffle * self.unshuffle)


@dataclass(frozen=True)
class ControlSpec:
    """Layout and family of a control file; ``found`` describes the keys for messages."""

    layout: str
    family: Family
    context_dim: int
    diff: bool = False
    found: dict[str, Any] = field(default_factory=dict)

    @property
    def is_t2i(self) -> bool:
        return self.layout in (LAYOUT_T2I_FULL, LAYOUT_T2I_LIGHT)


def _summary(shapes: Shapes) -> str:
    roots = sorted({".".join(k.split(".")[:2]) for k in shapes})
    shown = ", ".join(roots[:10]) + (f", ... ({len(roots)} groups)" if len(roots) > 10 else "")
    return f"{len(shapes)} tensors; key groups: {shown}"


def control_layout(shapes: Shapes, source: str = "control file") -> str:
    """The file's layout (``LAYOUT_*``), in ComfyUI's detection order; raises naming the keys found."""
    if "task_embedding" in shapes or "control_add_embedding.linear_1.weight" in shapes:
        raise UnknownModelError(f"{source}: a union ControlNet (ControlNet++ / ProMax: task_embedding, "
                                "control_add_embedding) is not supported yet; use a single-task ControlNet")
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        return LAYOUT_DIFFUSERS
    if V10_PREFIX + "zero_convs.0.0.weight" in shapes:
        return LAYOUT_V10
    if "zero_convs.0.0.weight" in shapes:
        return LAYOUT_V11
    if "body.0.in_conv.weight" in shapes:
        return LAYOUT_T2I_LIGHT
    if "conv_in.weight" in shapes and "body.0.block2.weight" in shapes:
        return LAYOUT_T2I_FULL
    raise UnknownModelError(
        f"{source}: not a ControlNet or T2I-Adapter ({_summary(shapes)}). Known layouts: diffusers ControlNetModel "
        "(controlnet_cond_embedding.*), ControlNet 1.0 (control_model.zero_convs.*), lllyasviel v1.1 "
        "(zero_convs.*), T2I-Adapter (conv_in + body.N.block1) and Adapter_light (body.0.in_conv)")


def from_diffusers_t2i(sd: Mapping[str, T]) -> dict[str, T]:
    """A diffusers ``T2IAdapter`` file (``adapter.*``) under TencentARC names (anything else unchanged).

    Full adapter: ``adapter.body.i.resnets.j`` -> ``body.{i * n + j}`` (n resnets per block) and the block's
    ``in_conv`` on its first resnet, ``body.{i * n}.in_conv`` (ComfyUI's renaming, with n read from the file
    instead of fixed at 2). Light adapter (``out_conv`` per block): ``adapter.body.i.resnets.j`` ->
    ``body.i.body.j``, ``in_conv`` / ``out_conv`` kept. ``adapter.conv_in`` -> ``conv_in``."""
    if not any(k.startswith(_DIFFUSERS_T2I) for k in sd):
        return dict(sd)
    light = _DIFFUSERS_T2I + "body.0.out_conv.weight" in sd
    per_block = len({k.split(".")[4] for k in sd if k.startswith(_DIFFUSERS_T2I + "body.0.resnets.")}) or 1
    out: dict[str, T] = {}
    for key, value in sd.items():
        parts = key.removeprefix(_DIFFUSERS_T2I).split(".")
        if parts[0] == "body" and len(parts) > 3 and parts[1].isdecimal():
            block = int(parts[1])
            if parts[2] == "resnets" and parts[3].isdecimal():
                head = f"body.{block}.body.{parts[3]}" if light else f"body.{block * per_block + int(parts[3])}"
                parts = [head, *parts[4:]]
            elif not light:
                parts = [f"body.{block * per_block}", *parts[2:]]
        out[".".join(parts)] = value
    return out


def _family(adm: bool, linear: bool) -> Family:
    if adm:
        return SDXL
    return SD20 if linear else SD15


def control_family(shapes: Shapes, source: str = "control file") -> ControlSpec:
    """Layout, family and context width of a ControlNet / T2I-Adapter from its header (no tensors read)."""
    shapes = from_diffusers_t2i(shapes)
    layout = control_layout(shapes, source)
    if layout in (LAYOUT_T2I_FULL, LAYOUT_T2I_LIGHT):
        cfg = detect_t2i(shapes, layout)
        family = SDXL if cfg.xl else SD15
        return ControlSpec(layout, family, 0, found={"t2i": cfg})
    prefix = V10_PREFIX if layout == LAYOUT_V10 else ""
    adm_keys = ("add_embedding.linear_1.weight",) if layout == LAYOUT_DIFFUSERS else (prefix + "label_emb.0.0.weight",)
    adm = any(k in shapes for k in adm_keys)
    context = 0
    linear = False
    for key, shape in shapes.items():
        if key.endswith("attn2.to_k.weight") and not context:
            context = int(shape[1])
        if key.endswith(".proj_in.weight"):
            linear = len(shape) == 2
    return ControlSpec(layout, _family(adm, linear), context, diff="difference" in shapes,
                       found={"adm": adm, "linear_proj": linear})


def _count(shapes: Shapes, pattern: str) -> int:
    pat = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := pat.match(k))})


def detect_t2i(shapes: Shapes, layout: str) -> T2IConfig:
    """T2I-Adapter config read from the file (stock ComfyUI hard-codes the light adapter's channels)."""
    if layout == LAYOUT_T2I_LIGHT:
        levels = _count(shapes, r"body\.(\d+)\.out_conv\.weight")
        channels = tuple(int(shapes[f"body.{i}.out_conv.weight"][0]) for i in range(levels))
        inner = tuple(int(shapes[f"body.{i}.in_conv.weight"][0]) for i in range(levels))
        nums_rb = _count(shapes, r"body\.0\.body\.(\d+)\.block1\.weight")
        return T2IConfig("light", channels, nums_rb, int(shapes["body.0.in_conv.weight"][1]), 3, inner=inner)
    conv_in = shapes["conv_in.weight"]
    c, cin = int(conv_in[0]), int(conv_in[1])
    blocks = _count(shapes, r"body\.(\d+)\.block1\.weight")
    nums_rb = max(blocks // 4, 1)
    return T2IConfig("full", (c, 2 * c, 4 * c, 4 * c), nums_rb, cin, int(shapes["body.0.block2.weight"][2]),
                     skep=any(k.endswith("skep.weight") for k in shapes),
                     use_conv=any(k.endswith("down_opt.op.weight") for k in shapes), xl=cin in (256, 768))
