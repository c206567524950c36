"""Upscale-model detection: the architecture, key layout and scale of an ESRGAN-family state dict.

``detect_upscaler`` recognises a file from its key names and shapes alone (no tensor data is read), and
``to_canonical_keys`` renames its tensors to ``engine.networks.upscalers``' attribute names. Layouts:

- ESRGAN "old" (``model.0.weight``, ``model.1.sub.N.RDB1.conv1.0.weight``, ``model.3.weight``, ...);
- ESRGAN "new-arch" (``conv_first``, ``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``, ``upconv1``, ``HRconv``);
- Real-ESRGAN / BasicSR RRDBNet (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1``, ...),
  with pixel-unshuffle input for the x2 / x1 models (first conv seeing 4x / 16x the image channels);
- Real-ESRGAN SRVGGNetCompact (``body.N.weight`` convs with PReLU, pixel shuffle).

Loading and running the networks (tiled) is ``engine.upscale``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import UnknownModelError
from engine.state_files import read_shapes

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["UpscalerSpec", "detect_upscaler", "to_canonical_keys", "build_upscaler", "ESRGAN", "COMPACT"]

ESRGAN = "ESRGAN"
COMPACT = "RealESRGAN-Compact"

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class UpscalerSpec:
    """What ``detect_upscaler`` found: architecture, key layout, scale and the network's sizes."""

    architecture: str  # ESRGAN | RealESRGAN-Compact
    layout: str  # "old" | "trunk" | "new" (RRDBNet key layouts) | "compact"
    scale: int
    in_channels: int
    out_channels: int
    num_feat: int
    num_blocks: int  # RRDB blocks, or the compact net's body convs between its first and last
    growth: int = 0
    upsamples: int = 0
    unshuffle: int = 1


# ------------------------------------------------------------------------------------------ detection
_WRAPPERS = ("params_ema.", "params.", "module.", "model_ema.", "state_dict.")


def _strip_wrappers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a training wrapper prefix (Real-ESRGAN's ``params_ema``, DataParallel's ``module.``)."""
    out = dict(sd)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPERS:
            inner = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
            if inner and (len(inner) == len(out) or prefix == "params_ema."):
                out, changed = inner, True
                break
    return out


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.fullmatch(k))})


def _found(shapes: Shapes) -> str:
    keys = sorted(shapes)
    return f"{len(keys)} tensors such as {keys[:4]}" if keys else "no tensors"


def _conv_out(shapes: Shapes, key: str, name: str) -> int:
    shape = shapes.get(key)
    if shape is None or len(shape) != 4:
        raise UnknownModelError(f"{name}: expected a conv weight {key!r}, found {shape}")
    return int(shape[0])


def _rrdb_spec(shapes: Shapes, name: str, layout: str, blocks: list[int], ups: int) -> UpscalerSpec:
    """Sizes of an RRDBNet whose keys are already canonical (``conv_first``, ``body.N.rdb1``...)."""
    first = shapes["conv_first.weight"]
    last = shapes.get("conv_last.weight")
    if last is None or len(first) != 4:
        raise UnknownModelError(f"{name}: ESRGAN-like keys but no final conv ('conv_last'); found {_found(shapes)}")
    in_ch, out_ch, num_feat = int(first[1]), int(last[0]), int(first[0])
    unshuffle = 1
    if in_ch != out_ch:
        ratio = in_ch // out_ch
        unshuffle = {4: 2, 16: 4}.get(ratio, 0) if in_ch % out_ch == 0 else 0
        if not unshuffle:
            raise UnknownModelError(f"{name}: first conv takes {in_ch} channels for {out_ch} out; expected equal "
                                    "counts or 4x / 16x (Real-ESRGAN pixel-unshuffle)")
        in_ch = out_ch
    if blocks != list(range(len(blocks))):
        raise UnknownModelError(f"{name}: RRDB blocks are not numbered 0..N-1 (found {blocks[:8]}...)")
    growth = _conv_out(shapes, "body.0.rdb1.conv1.weight", name) if blocks else 32
    factor = 2 ** ups
    if factor % unshuffle:
        raise UnknownModelError(f"{name}: {ups} x2 upsampling stages cannot undo a pixel-unshuffle by {unshuffle}")
    return UpscalerSpec(ESRGAN, layout, factor // unshuffle, in_ch, out_ch, num_feat, len(blocks), growth, ups,
                        unshuffle)


def _old_to_new(shapes: Shapes, name: str) -> tuple[dict[str, str], int, list[int]]:
    """Old-layout key -> canonical key, the number of upsampling stages and the RRDB block ids."""
    top = _indices(shapes, r"model\.(\d+)\.weight")
    blocks = _indices(shapes, r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight")
    last = top[-1] if top else -1
    ups = (last - 4) // 3
    lr_conv = len(blocks)
    expected = [0, *[3 + 3 * i for i in range(ups)], 2 + 3 * ups, 4 + 3 * ups]
    if ups < 0 or (last - 4) % 3 or top != expected or f"model.1.sub.{lr_conv}.weight" not in shapes:
        raise UnknownModelError(f"{name}: old ESRGAN layout ('model.N') with unexpected conv indices {top} "
                                f"and {len(blocks)} RRDB blocks; expected {expected} (upconv stages at 3, 6, ...)")
    mapping: dict[str, str] = {}
    rx = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
    for key in shapes:
        if m := rx.fullmatch(key):
            mapping[key] = f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
            continue
        for suffix in ("weight", "bias"):
            if key == f"model.1.sub.{lr_conv}.{suffix}":
                mapping[key] = f"conv_body.{suffix}"
        top_m = re.fullmatch(r"model\.(\d+)\.(weight|bias)", key)
        if top_m:
            idx, suffix = int(top_m[1]), top_m[2]
            names = {0: "conv_first", 2 + 3 * ups: "conv_hr", 4 + 3 * ups: "conv_last"}
            names.update({3 + 3 * i: f"conv_up{i + 1}" for i in range(ups)})
            mapping[key] = f"{names[idx]}.{suffix}"
    return mapping, ups, blocks


_TRUNK_RENAMES = (("RRDB_trunk.", "body."), ("trunk_conv.", "conv_body."), ("HRconv.", "conv_hr."))


def _trunk_to_new(shapes: Shapes) -> dict[str, str]:
    """ESRGAN "new-arch" key -> canonical key."""
    mapping: dict[str, str] = {}
    for key in shapes:
        new = key
        for old, repl in _TRUNK_RENAMES:
            if new.startswith(old):
                new = repl + new[len(old):]
        new = re.sub(r"\.RDB(\d)\.", r".rdb\1.", new)
        new = re.sub(r"^upconv(\d+)\.", r"conv_up\1.", new)
        mapping[key] = new
    return mapping


def _key_mapping(shapes: Shapes, name: str) -> tuple[UpscalerSpec, dict[str, str]]:
    if "model.0.weight" in shapes and any(k.startswith("model.1.sub.") for k in shapes):
        mapping, ups, blocks = _old_to_new(shapes, name)
        canon = {mapping[k]: v for k, v in shapes.items() if k in mapping}
        return _rrdb_spec(canon, name, "old", blocks, ups), mapping
    if "conv_first.weight" in shapes:
        trunk = any(k.startswith("RRDB_trunk.") for k in shapes)
        mapping = _trunk_to_new(shapes) if trunk else {k: k for k in shapes}
        canon = {mapping[k]: v for k, v in shapes.items()}
        blocks = _indices(canon, r"body\.(\d+)\.rdb1\.conv1\.weight")
        ups = len(_indices(canon, r"conv_up(\d+)\.weight"))
        if _indices(canon, r"conv_up(\d+)\.weight") != list(range(1, ups + 1)):
            raise UnknownModelError(f"{name}: upsampling convs are not numbered conv_up1..N")
        return _rrdb_spec(canon, name, "trunk" if trunk else "new", blocks, ups), mapping
    body = _indices(shapes, r"body\.(\d+)\.weight")
    if body and body[0] == 0 and len(shapes.get("body.0.weight", ())) == 4 and len(
            shapes.get("body.1.weight", ())) == 1:
        last = body[-1]
        convs = [i for i in body if len(shapes[f"body.{i}.weight"]) == 4]
        prelus = [i for i in body if len(shapes[f"body.{i}.weight"]) == 1]
        if convs != list(range(0, last + 1, 2)) or prelus != list(range(1, last, 2)):
            raise UnknownModelError(f"{name}: SRVGGNetCompact-like 'body.N' keys, but convs at {convs} and "
                                    f"PReLUs at {prelus} do not alternate")
        in_ch, num_feat = int(shapes["body.0.weight"][1]), int(shapes["body.0.weight"][0])
        last_out = _conv_out(shapes, f"body.{last}.weight", name)
        out_ch = in_ch if last_out % in_ch == 0 else 3
        scale = math.isqrt(last_out // out_ch)
        if scale * scale * out_ch != last_out:
            raise UnknownModelError(f"{name}: last conv has {last_out} channels; expected out_channels * scale^2 "
                                    f"(e.g. 48 for RGB x4)")
        spec = UpscalerSpec(COMPACT, "compact", scale, in_ch, out_ch, num_feat, len(convs) - 2)
        return spec, {k: k for k in shapes}
    raise UnknownModelError(
        f"{name}: not a supported upscale model (ESRGAN / Real-ESRGAN RRDBNet or SRVGGNetCompact); found "
        f"{_found(shapes)}")


def detect_upscaler(shapes: Shapes, name: str = "upscale model") -> UpscalerSpec:
    """Architecture, scale and sizes of an upscale model from its key -> shape map; ``name`` goes in errors."""
    return _key_mapping(_strip_wrappers(shapes), name)[0]


def to_canonical_keys(sd: Mapping[str, torch.Tensor], name: str = "upscale model"
                      ) -> tuple[UpscalerSpec, dict[str, torch.Tensor]]:
    """The spec and the state dict renamed to ``engine.networks.upscalers``' attribute names."""
    sd = _strip_wrappers(sd)
    spec, mapping = _key_mapping(read_shapes(sd), name)
    # unmapped keys keep their names, so a strict load names them instead of dropping them
    return spec, {mapping.get(k, k): v for k, v in sd.items()}


def build_upscaler(spec: UpscalerSpec) -> nn.Module:
    """An (uninitialised-weights) network for ``spec``."""
    from engine.networks.upscalers import RRDBNet, SRVGGNetCompact

    if spec.architecture == COMPACT:
        return SRVGGNetCompact(spec.in_channels, spec.out_channels, spec.num_feat, spec.num_blocks, spec.scale)
    return RRDBNet(spec.in_channels, spec.out_channels, spec.num_feat, spec.num_blocks, spec.growth,
                   spec.upsamples, spec.unshuffle)
