"""The VAE handle: the shared AutoencoderKL with its compute dtype and device, batch / tile sizing from the memory
it may use, and tiled encode / decode."""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from engine.model_management import ManagedModel, ModelManager
from engine.networks.vae import AutoencoderKL

__all__ = ["VaeHandle", "tiled_apply"]


def _feather(h: int, w: int, overlap: int, device: torch.device) -> torch.Tensor:
    """A tile weight that ramps linearly over ``overlap`` cells at each edge."""
    def ramp(n: int) -> torch.Tensor:
        r = torch.ones(n, device=device)
        k = min(overlap, n // 2)
        if k > 0:
            edge = (torch.arange(k, device=device, dtype=torch.float32) + 1) / (k + 1)
            r[:k] = edge
            r[n - k:] = edge.flip(0)
        return r
    return ramp(h)[:, None] * ramp(w)[None, :]


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int,
                scale: float, out_channels: int) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles of x [B,C,H,W] and blend (output size = input size * scale)."""
    b, _, h, w = x.shape
    oh, ow = round(h * scale), round(w * scale)
    out = torch.zeros(b, out_channels, oh, ow, device=x.device)
    weight = torch.zeros(1, 1, oh, ow, device=x.device)
    step = max(tile - overlap, 1)
    ys = list(range(0, max(h - overlap, 1), step))
    xs = list(range(0, max(w - overlap, 1), step))
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            y0c, x0c = max(y1 - tile, 0), max(x1 - tile, 0)
            piece = fn(x[:, :, y0c:y1, x0c:x1]).float()
            ty, tx = round(y0c * scale), round(x0c * scale)
            ph, pw = piece.shape[2], piece.shape[3]
            mask = _feather(ph, pw, round(overlap * scale), x.device)
            out[:, :, ty:ty + ph, tx:tx + pw] += piece * mask
            weight[:, :, ty:ty + ph, tx:tx + pw] += mask
    return out / weight


def _ram_free() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


class VaeHandle:
    """The VAE: encode pixels (BHWC, 0..1) to raw latents and decode back; tiled fallbacks on OOM."""

    def __init__(self, vae: AutoencoderKL, manager: ModelManager, entry: ManagedModel | None = None,
                 compute_dtype: torch.dtype | None = None) -> None:
        self.vae = vae
        # what the decoder is fed; bf16 weights on the CPU still compute between layers in fp32 (CpuBf16)
        self.compute_dtype = compute_dtype
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(vae, "vae", "vae")
        self.downscale = vae.config.downscale
        self.latent_channels = vae.config.embed_dim
        # Upper bound on the activation memory of one VAE call (None: free memory of the device only).
        # Larger calls go tiled automatically, so a 2048x2048 decode needs a few GB instead of tens.
        self.max_memory: int | None = None

    def clone(self) -> VaeHandle:
        """A handle sharing the network."""
        return copy.copy(self)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the VAE computes in (its weights may be stored narrower)."""
        return self.compute_dtype or next(self.vae.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the VAE runs (the CPU under ``--cpu-vae``)."""
        return self.manager.policy.device_for("vae")

    @property
    def first_stage_model(self) -> AutoencoderKL:
        """ComfyUI's ``VAE.first_stage_model``: the network (``encoder`` / ``decoder`` named as in checkpoints)."""
        return self.vae

    def crop_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Centre-crop BHWC pixels to multiples of the downscale factor (VAEEncode's rule)."""
        d = self.downscale
        h, w = (pixels.shape[1] // d) * d, (pixels.shape[2] // d) * d
        if h == pixels.shape[1] and w == pixels.shape[2]:
            return pixels
        if h == 0 or w == 0:
            raise ValueError(f"VAE encode: image {tuple(pixels.shape[1:3])} is smaller than {d}x{d} pixels")
        oy, ox = (pixels.shape[1] % d) // 2, (pixels.shape[2] % d) // 2
        return pixels[:, oy:oy + h, ox:ox + w, :]

    # ComfyUI's `comfy.sd.VAE` names for the same facts (packs read them: VideoHelperSuite's batched nodes)
    @property
    def downscale_ratio(self) -> int:
        return int(self.downscale)

    @property
    def upscale_ratio(self) -> int:
        return int(self.downscale)

    def spacial_compression_encode(self) -> int:
        return int(self.downscale)

    def spacial_compression_decode(self) -> int:
        return int(self.downscale)

    def vae_encode_crop_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.crop_pixels(pixels)

    def _on_device(self) -> tuple[AutoencoderKL, torch.device, torch.dtype]:
        module = self.manager.load(self.entry)
        return module, self.device, self.dtype  # type: ignore[return-value]

    def _batch_size(self, pixels_per_item: int, bytes_per_pixel: int) -> int:
        """Items per VAE call: all of them on the CPU, as many as fit in free memory on a GPU."""
        if self.device.type == "cpu":
            return 1 << 30
        per_item = pixels_per_item * bytes_per_pixel * torch.finfo(self.dtype).bits // 8
        return max(1, self.manager.policy.free_memory() // max(per_item, 1))

    def _memory_available(self) -> int:
        """Bytes one VAE call may use: free device memory, capped by ``max_memory``."""
        free = self.manager.policy.free_memory() if self.device == self.manager.policy.device else _ram_free()
        return free if self.max_memory is None else min(free, self.max_memory)

    def _call_bytes(self, pixels: int, bytes_per_pixel: int) -> int:
        """Estimated activation bytes of one item's call over ``pixels`` image pixels (SD VAE width 128)."""
        width = self.vae.config.ch / 128
        return int(pixels * bytes_per_pixel * width * torch.finfo(self.dtype).bits // 8)

    def _auto_tile(self, image_pixels: int, bytes_per_pixel: int, tile_px: int) -> int | None:
        """None when one whole item fits in memory, else the largest tile side (pixels) that fits.

        On a GPU the VAE is loaded and least recently used networks are offloaded first, so a UNet still on
        the device does not force tiling."""
        if self.device.type != "cpu":
            self._on_device()
            self.manager.free_memory(self._call_bytes(image_pixels, bytes_per_pixel), keep=(self.entry,))
        budget = self._memory_available()
        if self._call_bytes(image_pixels, bytes_per_pixel) <= budget:
            return None
        min_tile = 16 * self.downscale
        while tile_px > min_tile and self._call_bytes(tile_px * tile_px, bytes_per_pixel) > budget:
            tile_px //= 2
        return max(tile_px, min_tile)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B,H,W,C] in 0..1 -> raw latent [B,4,H/8,W/8] (posterior mean); tiled when memory is short."""
        cropped = self.crop_pixels(pixels)
        tile = self._auto_tile(cropped.shape[1] * cropped.shape[2], 1800, 512)
        if tile is not None:
            return self.encode_tiled(pixels, tile=tile, overlap=tile // 8)
        x = cropped[..., :3].movedim(-1, 1).float() * 2.0 - 1.0

        def run() -> torch.Tensor:
            vae, dev, dtype = self._on_device()
            # activation memory of the SD VAE encoder: about 1.8 kB per pixel at 1 byte/element
            step = self._batch_size(x.shape[2] * x.shape[3], 1800)
            with torch.no_grad():
                return torch.cat([vae.encode(x[i:i + step].to(dev, dtype)).float().cpu()
                                  for i in range(0, x.shape[0], step)])

        try:
            return self.manager.run_oom_safe(run)
        except torch.OutOfMemoryError:
            return self.encode_tiled(pixels)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw latent [B,4,h,w] -> pixels [B,8h,8w,3] = clamp((x+1)/2, 0, 1); tiled when memory is short."""
        tile = self._auto_tile(latent.shape[2] * latent.shape[3] * self.downscale**2, 2200, 64 * self.downscale)
        if tile is not None:
            cells = tile // self.downscale
            return self.decode_tiled(latent, tile=cells, overlap=cells // 4)

        def run() -> torch.Tensor:
            vae, dev, dtype = self._on_device()
            # decoder activations: about 2.2 kB per output pixel at 1 byte/element
            step = self._batch_size(latent.shape[2] * latent.shape[3] * self.downscale**2, 2200)
            with torch.no_grad():
                return torch.cat([vae.decode(latent[i:i + step].to(dev, dtype)).float().cpu()
                                  for i in range(0, latent.shape[0], step)])

        try:
            out = self.manager.run_oom_safe(run)
        except torch.OutOfMemoryError:
            return self.decode_tiled(latent)
        return ((out + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)

    def decode_tiled(self, latent: torch.Tensor, tile: int = 64, overlap: int = 16) -> torch.Tensor:
        """Decode in overlapping latent tiles (blended); for images too large to decode at once."""
        vae, dev, dtype = self._on_device()

        def fn(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return vae.decode(t.to(dev, dtype)).float().cpu()

        out = tiled_apply(fn, latent.float().cpu(), tile, overlap, self.downscale, 3)
        return ((out + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)

    def encode_tiled(self, pixels: torch.Tensor, tile: int = 512, overlap: int = 64) -> torch.Tensor:
        """Encode in overlapping pixel tiles (blended)."""
        x = self.crop_pixels(pixels)[..., :3].movedim(-1, 1).float() * 2.0 - 1.0
        vae, dev, dtype = self._on_device()

        def fn(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return vae.encode(t.to(dev, dtype)).float().cpu()

        tile = max(tile - tile % self.downscale, self.downscale)
        overlap -= overlap % self.downscale
        return tiled_apply(fn, x.cpu(), tile, overlap, 1.0 / self.downscale, self.latent_channels)
