"""Upscale models (ComfyUI's UPSCALE_MODEL): load ESRGAN / Real-ESRGAN files and run them tiled.

``load_upscale_model(path, manager)`` reads a state dict through ``engine.state_files`` (memory-mapped
safetensors, weights-only pickles), recognises the architecture and scale from the key names and shapes
(``detect_upscaler``, in ``engine.upscale_detect``, which lists the supported layouts) and returns an
``UpscaleModel`` whose network the ``ModelManager`` moves to the compute device.
``UpscaleModel.upscale(image)`` runs ComfyUI's ImageUpscaleWithModel recipe: 512 px tiles overlapping by 32,
the tile halved after an out-of-memory error, overlaps blended with linear feathers.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from engine.errors import CheckpointError, UnknownModelError
from engine.model_management import ManagedModel, ModelManager, file_cache_key
from engine.state_files import read_state_dict
from engine.tiling import tile_positions, tiled_scale_multidim
from engine.upscale_detect import UpscalerSpec, build_upscaler, detect_upscaler, to_canonical_keys

__all__ = ["UpscalerSpec", "UpscaleModel", "detect_upscaler", "to_canonical_keys", "build_upscaler",
           "load_upscale_model", "upscale_model_from_state_dict", "tiled_scale"]

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MIN_TILE = 128  # ComfyUI gives up halving below this

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------- tiling
def tiled_scale(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, scale: int,
                out_channels: int, progress: Progress | None = None) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of each image of x [B,C,H,W] and blend (``engine.tiling``); output
    [B,C',H*s,W*s] (CPU, float32). An image that fits one tile is passed whole, so the result equals ``fn(x)``."""
    b, _, h, w = x.shape
    total = b * len(tile_positions(h, tile, overlap)) * len(tile_positions(w, tile, overlap))
    return tiled_scale_multidim(x, lambda t: fn(t).float(), (tile, tile), overlap, scale, out_channels, "cpu",
                                pbar=None if progress is None else _Steps(progress, total))


class _Steps:
    """A ``pbar`` (``update(1)`` per tile) reporting ``progress(done, total)``."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def update(self, n: int) -> None:
        self.done += n
        self.progress(self.done, self.total)


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
def upscale_model_from_state_dict(sd: Mapping[str, torch.Tensor], manager: ModelManager,
                                  name: str = "upscale model") -> UpscaleModel:
    """The ``UpscaleModel`` of an upscaler's tensors (architecture detected from them; ``name`` in messages)."""
    spec, weights = to_canonical_keys(sd, name)
    with torch.device("meta"):
        module = build_upscaler(spec)
    try:
        module.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        details = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip())[:400]
        raise UnknownModelError(f"{name}: detected {spec.architecture} x{spec.scale} ({spec.layout} layout) "
                                f"but its tensors do not fit that network: {details}") from exc
    return UpscaleModel(module.eval(), spec, manager, name)


def _build(path: Path, manager: ModelManager) -> UpscaleModel:
    sd, _ = read_state_dict(path)
    return upscale_model_from_state_dict(sd, manager, path.name)


def load_upscale_model(path: str | os.PathLike[str], manager: ModelManager) -> UpscaleModel:
    """Load (once per unchanged file) an ESRGAN / Real-ESRGAN file as an ``UpscaleModel``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"upscale model not found: {p}. Put it in models/upscale_models")
    return manager.cached(file_cache_key("upscale", p), lambda: _build(p, manager))
