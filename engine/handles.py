"""MODEL / CLIP / VAE handles: a shared network plus per-handle settings and patches.

Handles clone cheaply: clones share the network object and copy only their patch lists, so a LoRA on one
clone never changes another. Patched weights are computed when the handle runs (on the compute device,
in float32, cached per handle) and passed to the network through ``torch.func.functional_call``; the
shared base weights are never modified.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Union

import torch
from torch import nn

from engine.families import Family
from engine.latent_formats import LatentFormat
from engine.model_management import ManagedModel, ModelManager
from engine.networks.text_encoders import ClipTextEncoder
from engine.networks.vae import AutoencoderKL
from engine.tokenizer import PromptTokenizer, TokenWeight

__all__ = ["ModelHandle", "ClipHandle", "VaeHandle", "Patch", "Conditioning"]

# A patch is a weight delta (same shape as the weight) or a function weight(fp32) -> delta.
Patch = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
Conditioning = list[list[Any]]


class _Patchable:
    """Patch bookkeeping shared by the MODEL and CLIP handles."""

    _prefixes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.patches: dict[str, list[tuple[float, Patch, float]]] = {}
        self._patched: dict[str, torch.Tensor] | None = None

    def _module(self) -> nn.Module:
        raise NotImplementedError

    def _normalise_key(self, key: str) -> str | None:
        names = dict(self._module().named_parameters())
        for prefix in ("", *self._prefixes):
            if key.startswith(prefix) and key[len(prefix):] in names:
                return key[len(prefix):]
        return None

    def add_patches(self, patches: dict[str, Patch], strength_patch: float = 1.0,
                    strength_model: float = 1.0) -> list[str]:
        """Record patches (applied when the handle runs); returns the keys that matched a weight."""
        added = []
        for key, patch in patches.items():
            name = self._normalise_key(key)
            if name is None:
                continue
            self.patches.setdefault(name, []).append((strength_patch, patch, strength_model))
            added.append(key)
        self._patched = None
        return added

    def _patched_weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        if not self.patches:
            return {}
        if self._patched is not None:
            first = next(iter(self._patched.values()))
            if first.device == next(module.parameters()).device:
                return self._patched
        params = dict(module.named_parameters())
        out: dict[str, torch.Tensor] = {}
        for name, entries in self.patches.items():
            base = params[name]
            w = base.detach().float()
            for strength, patch, strength_model in entries:
                if strength_model != 1.0:
                    w = w * strength_model
                delta = patch(w) if callable(patch) else patch.to(device=w.device, dtype=torch.float32)
                w = w + strength * delta.reshape(w.shape)
            out[name] = w.to(base.dtype)
        self._patched = out
        return out

    def _copy_patches_to(self, other: _Patchable) -> None:
        other.patches = {k: list(v) for k, v in self.patches.items()}
        other._patched = None


class ModelHandle(_Patchable):
    """The MODEL: a diffusion network, its noise schedule and latent format.

    apply_model(x, sigma, context) does the c_in scaling, the nearest-integer timestep and the eps / v rule
    and returns the denoised latent (k-diffusion denoiser contract).
    """

    _prefixes = ("diffusion_model.", "model.diffusion_model.")

    def __init__(self, diffusion_model: nn.Module, model_sampling: Any, latent_format: LatentFormat,
                 family: Family, manager: ModelManager, entry: ManagedModel | None = None) -> None:
        super().__init__()
        self.diffusion_model = diffusion_model
        self.model_sampling = model_sampling
        self.latent_format = latent_format
        self.family = family
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(diffusion_model, family.name, "unet")
        self.model_options: dict[str, Any] = {"transformer_options": {}}

    def _module(self) -> nn.Module:
        return self.diffusion_model

    @property
    def in_channels(self) -> int:
        return int(self.diffusion_model.config.in_channels)

    @property
    def context_dim(self) -> int:
        return int(self.diffusion_model.config.context_dim)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.diffusion_model.parameters()).dtype

    @property
    def load_device(self) -> torch.device:
        return self.manager.policy.device

    def clone(self) -> ModelHandle:
        """A handle sharing the network, with its own copy of the patches and options."""
        other = copy.copy(self)
        self._copy_patches_to(other)
        other.model_options = copy.deepcopy(self.model_options)
        return other

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor | None = None,
                    y: torch.Tensor | None = None, concat: torch.Tensor | None = None,
                    transformer_options: dict[str, Any] | None = None) -> torch.Tensor:
        """Denoised latent for noisy ``x`` at ``sigma`` ([B] or scalar) given the text ``context``."""
        module = self.manager.load(self.entry)
        device, dtype = self.load_device, self.dtype
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        xc = self.model_sampling.calculate_input(sigma, x)
        if concat is not None:
            xc = torch.cat([xc, concat.to(xc)], dim=1)
        t = self.model_sampling.timestep(sigma).float()
        args: tuple[Any, ...] = (xc.to(device, dtype), t.to(device))
        kwargs: dict[str, Any] = {
            "context": None if context is None else context.to(device, dtype),
            "y": None if y is None else y.to(device, dtype),
        }
        patched = self._patched_weights(module)
        with torch.no_grad():
            if patched:
                out = torch.func.functional_call(module, patched, args, kwargs, strict=False)
            else:
                out = module(*args, **kwargs)
        out = out.to(device=x.device, dtype=torch.float32)
        return self.model_sampling.calculate_denoised(sigma, out, x)

    # ComfyUI-style aliases used by packs
    def get_model_object(self, name: str) -> Any:
        """ComfyUI's accessor: ``model_sampling`` or ``diffusion_model``."""
        return getattr(self, name)


class ClipHandle(_Patchable):
    """The CLIP: tokenizer + text encoder + clip-skip layer. encode -> ComfyUI CONDITIONING."""

    _prefixes = ("transformer.", "cond_stage_model.")

    def __init__(self, encoder: ClipTextEncoder, tokenizer: PromptTokenizer, manager: ModelManager,
                 entry: ManagedModel | None = None, embedding_directory: str | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(encoder, "clip_l", "clip")
        self.embedding_directory = embedding_directory
        self.layer_idx: int = -1

    def _module(self) -> nn.Module:
        return self.encoder

    def clone(self) -> ClipHandle:
        """A handle sharing the encoder, with its own layer setting and patches."""
        other = copy.copy(self)
        self._copy_patches_to(other)
        return other

    def set_clip_skip(self, layer: int) -> None:
        """CLIPSetLastLayer: -1 = last layer, -2 = penultimate, ... (in place; clone first)."""
        if layer >= 0:
            raise ValueError(f"CLIPSetLastLayer: stop_at_clip_layer must be negative (-1 = last), got {layer}")
        self.layer_idx = layer

    clip_layer = set_clip_skip

    def tokenize(self, text: str) -> dict[str, list[list[TokenWeight]]]:
        """Prompt -> {"l": windows of (token, weight)} (ComfyUI's SD1 token layout)."""
        return {"l": self.tokenizer.tokenize_with_weights(text)}

    def _run(self, windows: list[list[TokenWeight]]) -> tuple[torch.Tensor, torch.Tensor]:
        module = self.manager.load(self.entry)
        device = self.manager.policy.device
        # embedding vectors (textual inversion) ride on a placeholder id and replace its embedding
        injected = [(r, c, t) for r, w in enumerate(windows) for c, (t, _) in enumerate(w)
                    if isinstance(t, torch.Tensor)]
        ids = torch.tensor([[0 if isinstance(t, torch.Tensor) else int(t) for t, _ in w] for w in windows],
                           dtype=torch.long, device=device)
        args = (ids, self.layer_idx, injected or None)
        patched = self._patched_weights(module)
        with torch.no_grad():
            if patched:
                hidden, pooled = torch.func.functional_call(module, patched, args, strict=False)
            else:
                hidden, pooled = module(*args)
        return hidden.float().cpu(), pooled.float().cpu()

    def encode_from_tokens(self, tokens: dict[str, list[list[TokenWeight]]], return_pooled: bool = False
                           ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode token windows; weights interpolate from the empty prompt: z = (z - z_empty) * w + z_empty."""
        windows = tokens["l"]
        has_weights = any(w != 1.0 for window in windows for _, w in window)
        empty: list[TokenWeight] = [(t, 1.0) for t in self.tokenizer.empty_tokens()]
        batch = list(windows) + ([empty] if has_weights or not windows else [])
        hidden, pooled = self.manager.run_oom_safe(lambda: self._run(batch))
        parts = []
        for k, window in enumerate(windows):
            z = hidden[k].clone()
            if has_weights:
                empty = hidden[-1]
                for j, (_, w) in enumerate(window):
                    if w != 1.0:
                        z[j] = (z[j] - empty[j]) * w + empty[j]
            parts.append(z)
        cond = torch.cat(parts, dim=0)[None] if parts else hidden[-1:]
        first_pooled = pooled[0:1]
        return (cond, first_pooled) if return_pooled else cond

    def encode_from_tokens_scheduled(self, tokens: dict[str, list[list[TokenWeight]]]) -> Conditioning:
        """CLIPTextEncode's output: [[cond, {"pooled_output": pooled}]]."""
        cond, pooled = self.encode_from_tokens(tokens, return_pooled=True)  # type: ignore[misc]
        return [[cond, {"pooled_output": pooled}]]

    def encode(self, text: str) -> Conditioning:
        """Tokenize and encode a prompt to CONDITIONING."""
        return self.encode_from_tokens_scheduled(self.tokenize(text))


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


class VaeHandle:
    """The VAE: encode pixels (BHWC, 0..1) to raw latents and decode back; tiled fallbacks on OOM."""

    def __init__(self, vae: AutoencoderKL, manager: ModelManager, entry: ManagedModel | None = None) -> None:
        self.vae = vae
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(vae, "vae", "vae")
        self.downscale = vae.config.downscale
        self.latent_channels = vae.config.embed_dim

    def clone(self) -> VaeHandle:
        """A handle sharing the network."""
        return copy.copy(self)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

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

    def _on_device(self) -> tuple[AutoencoderKL, torch.device, torch.dtype]:
        module = self.manager.load(self.entry)
        return module, self.manager.policy.device, self.dtype  # type: ignore[return-value]

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B,H,W,C] in 0..1 -> raw latent [B,4,H/8,W/8] (posterior mean)."""
        x = self.crop_pixels(pixels)[..., :3].movedim(-1, 1).float() * 2.0 - 1.0

        def run() -> torch.Tensor:
            vae, dev, dtype = self._on_device()
            with torch.no_grad():
                return vae.encode(x.to(dev, dtype)).float().cpu()

        try:
            return self.manager.run_oom_safe(run)
        except torch.OutOfMemoryError:
            return self.encode_tiled(pixels)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw latent [B,4,h,w] -> pixels [B,8h,8w,3] = clamp((x+1)/2, 0, 1)."""
        def run() -> torch.Tensor:
            vae, dev, dtype = self._on_device()
            with torch.no_grad():
                return vae.decode(latent.to(dev, dtype)).float().cpu()

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
