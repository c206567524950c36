"""Upscale models (ComfyUI's UPSCALE_MODEL): detect ESRGAN / Real-ESRGAN files, build and run them tiled.

``load_upscale_model(path, manager)`` reads a state dict through ``engine.state_files`` (memory-mapped
safetensors, weights-only pickles), recognises the architecture and scale from the key names and shapes
(``detect_upscaler``) and returns an ``UpscaleModel`` whose network the ``ModelManager`` moves to the
compute device. ``UpscaleModel.upscale(image)`` runs ComfyUI's ImageUpscaleWithModel recipe: 512 px tiles
overlapping by 32, the tile halved after an out-of-memory error, overlaps blended with linear feathers.

Supported layouts (all mapped to ``engine.networks.upscalers``):

- ESRGAN "old" (``model.0.weight``, ``model.1.sub.N.RDB1.conv1.0.weight``, ``model.3.weight``, ...);
- ESRGAN "new-arch" (``conv_first``, ``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``, ``upconv1``, ``HRconv``);
- Real-ESRGAN / BasicSR RRDBNet (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1``, ...),
  with pixel-unshuffle input for the x2 / x1 models (first conv seeing 4x / 16x the image channels);
- Real-ESRGAN SRVGGNetCompact (``body.N.weight`` convs with PReLU, pixel shuffle).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError, UnknownModelError
from engine.model_management import ManagedModel, ModelManager, file_cache_key
from engine.state_files import read_shapes, read_state_dict

__all__ = ["UpscalerSpec", "UpscaleModel", "detect_upscaler", "to_canonical_keys", "build_upscaler",
           "load_upscale_model", "tile_positions", "tiled_scale"]

ESRGAN = "ESRGAN"
COMPACT = "RealESRGAN-Compact"
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MIN_TILE = 128  # ComfyUI gives up halving below this

Progress = Callable[[int, int], None]
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


# --------------------------------------------------------------------------------------------- tiling
def tile_positions(size: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) of the tiles along one axis, ComfyUI's rule: stride ``tile - overlap``, the last
    tile shorter rather than shifted; one tile when it covers ``size``."""
    if size <= tile:
        return [(0, size)]
    out = []
    for start in range(0, size - overlap, max(tile - overlap, 1)):
        pos = max(0, min(size - overlap, start))
        out.append((pos, min(tile, size - pos)))
    return out


def _feather(n: int, feather: int) -> torch.Tensor:
    """A weight ramp (t + 1) / feather over ``feather`` cells at both ends (multiplied where they meet)."""
    r = torch.ones(n)
    if 0 < feather < n:
        idx = torch.arange(feather)
        ramp = (idx + 1).float() / feather
        r[idx] *= ramp
        r[n - 1 - idx] *= ramp
    return r


def tiled_scale(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, scale: int,
                out_channels: int, progress: Progress | None = None) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of each image of x [B,C,H,W] and blend; output [B,C',H*s,W*s] (CPU).

    An image that fits one tile is passed whole (no blending), so the result equals ``fn(x)``."""
    b, _, h, w = x.shape
    ys, xs = tile_positions(h, tile, overlap), tile_positions(w, tile, overlap)
    total, done = b * len(ys) * len(xs), 0
    out = torch.zeros(b, out_channels, h * scale, w * scale)
    feather = round(overlap * scale)
    for i in range(b):
        item = x[i:i + 1]
        if len(ys) == 1 and len(xs) == 1:
            out[i:i + 1] = fn(item).float().cpu()
            done += 1
            if progress is not None:
                progress(done, total)
            continue
        acc = torch.zeros(1, out_channels, h * scale, w * scale)
        div = torch.zeros(1, 1, h * scale, w * scale)
        for y0, th in ys:
            for x0, tw in xs:
                piece = fn(item[:, :, y0:y0 + th, x0:x0 + tw]).float().cpu()
                ph, pw = piece.shape[-2:]
                mask = _feather(ph, feather)[:, None] * _feather(pw, feather)[None, :]
                oy, ox = y0 * scale, x0 * scale
                acc[:, :, oy:oy + ph, ox:ox + pw] += piece * mask
                div[:, :, oy:oy + ph, ox:ox + pw] += mask
                done += 1
                if progress is not None:
                    progress(done, total)
        out[i:i + 1] = acc / div
    return out


# --------------------------------------------------------------------------------------------- handle
class UpscaleModel:
    """The UPSCALE_MODEL: a super-resolution network on the manager's device, with its detected spec.

    Packs written for ComfyUI's spandrel descriptor find ``.model``, ``.scale``, ``.architecture``,
    ``.input_channels`` / ``.output_channels``, ``.to(device)`` and ``model(x [B,C,H,W])`` here.
    """

    def __init__(self, module: nn.Module, spec: UpscalerSpec, manager: ModelManager, name: str = "upscale",
                 entry: ManagedModel | None = None) -> None:
        self.model = module
        self.spec = spec
        self.name = name
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(module, name, "upscale")

    @property
    def scale(self) -> int:
        return self.spec.scale

    @property
    def architecture(self) -> str:
        return self.spec.architecture

    @property
    def input_channels(self) -> int:
        return self.spec.in_channels

    @property
    def output_channels(self) -> int:
        return self.spec.out_channels

    @property
    def device(self) -> torch.device:
        return self.entry.device()

    def to(self, device: torch.device | str) -> UpscaleModel:
        """Load onto the compute device, or offload for any other target (ComfyUI's ``.to("cpu")``)."""
        if torch.device(device).type == self.manager.policy.device.type:
            self.manager.load(self.entry)
        else:
            self.manager.offload(self.entry)
        return self

    def eval(self) -> UpscaleModel:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale x [B,C,H,W] (0..1, float) on the compute device; the result is on x's device, unclamped."""
        module = self.manager.load(self.entry)
        dev = self.manager.policy.device
        with torch.no_grad():
            out: torch.Tensor = module(x.to(dev, torch.float32))
        return out.to(x.device)

    def _memory_needed(self, image: torch.Tensor) -> int:
        """ComfyUI's estimate: weights + a 512 px tile's activations (384 bytes per pixel per scale) + input."""
        return int(self.entry.size + 512 * 512 * 3 * 4 * max(self.scale, 1) * 384 + image.numel() * 4)

    def upscale(self, image: torch.Tensor, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                progress: Progress | None = None) -> torch.Tensor:
        """IMAGE [B,H,W,C] 0..1 -> [B,H*s,W*s,C'] clamped to 0..1, tiled; halves the tile on out-of-memory."""
        x = _image_channels(image, self.spec.in_channels).movedim(-1, 1).float().cpu()
        if self.manager.policy.device.type != "cpu":
            self.manager.free_memory(self._memory_needed(x), keep=(self.entry,))
        self.manager.load(self.entry)
        while True:
            try:
                out = tiled_scale(self, x, tile, overlap, self.scale, self.spec.out_channels, progress)
                break
            except torch.OutOfMemoryError:
                tile //= 2
                if tile < MIN_TILE:
                    raise
                if self.manager.policy.device.type == "cuda":
                    torch.cuda.empty_cache()
        return out.clamp(0.0, 1.0).movedim(1, -1)


def _image_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Match the model's input channels: drop alpha from RGBA, repeat grey to RGB, or raise."""
    if image.ndim != 4:
        raise ValueError(f"expected an IMAGE tensor [B,H,W,C], got shape {tuple(image.shape)}")
    c = image.shape[-1]
    if c == channels:
        return image
    if c == 4 and channels == 3:
        return image[..., :3]
    if c == 1 and channels == 3:
        return image.expand(*image.shape[:-1], 3)
    if c >= 3 and channels == 1:
        return image[..., :3].mean(-1, keepdim=True)
    raise ValueError(f"the upscale model takes {channels}-channel images; this image has {c} channels")


# -------------------------------------------------------------------------------------------- loading
def _build(path: Path, manager: ModelManager) -> UpscaleModel:
    sd, _ = read_state_dict(path)
    spec, weights = to_canonical_keys(sd, path.name)
    with torch.device("meta"):
        module = build_upscaler(spec)
    try:
        module.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        details = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip())[:400]
        raise UnknownModelError(f"{path.name}: detected {spec.architecture} x{spec.scale} ({spec.layout} layout) "
                                f"but its tensors do not fit that network: {details}") from exc
    return UpscaleModel(module.eval(), spec, manager, path.name)


def load_upscale_model(path: str | os.PathLike[str], manager: ModelManager) -> UpscaleModel:
    """Load (once per unchanged file) an ESRGAN / Real-ESRGAN file as an ``UpscaleModel``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"upscale model not found: {p}. Put it in models/upscale_models")
    return manager.cached(file_cache_key("upscale", p), lambda: _build(p, manager))
