"""Step previews of a sampler's x0: cheap latent -> RGB through a latent format's linear factor matrix
(latent2rgb, one pixel per latent cell), or the family's Tiny AutoEncoder (TAESD, full resolution) when its
decoder file is in ``models/vae_approx`` (``taesd_decoder.*``, ``taesdxl_decoder.*``, ``taesd3_decoder.*``,
``taef1_decoder.*``), as ComfyUI's ``--preview-method taesd`` / ``auto`` do.

torch and PIL are imported inside the functions: the server's event sink imports the preview-method rule
from here on its torch-free start-up path.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.latent_formats import LatentFormat

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from engine.handles import ModelHandle
    from engine.networks.taesd import TinyAutoencoder

__all__ = ["PREVIEW_METHODS", "effective_preview_method", "latent_to_rgb", "latent_preview", "taesd_decoder_file",
           "load_taesd_decoder", "taesd_image", "step_previewer"]

log = logging.getLogger(__name__)

PREVIEW_METHODS = frozenset({"none", "auto", "latent2rgb", "taesd"})


def latent_to_rgb(latent: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """[C,h,w] or [B,C,h,w] model-space latent -> [h,w,3] (first item) RGB in 0..1."""
    import torch

    if not fmt.latent_rgb_factors:
        raise ValueError(f"latent format {fmt.name} has no RGB preview factors")
    x = latent[0] if latent.ndim == 4 else latent
    if x.shape[0] != len(fmt.latent_rgb_factors):
        raise ValueError(f"latent has {x.shape[0]} channels; format {fmt.name} previews "
                         f"{len(fmt.latent_rgb_factors)}")
    factors = torch.tensor(fmt.latent_rgb_factors, dtype=torch.float32, device=x.device)
    rgb = x.float().permute(1, 2, 0) @ factors
    if fmt.latent_rgb_bias is not None:
        rgb = rgb + torch.tensor(fmt.latent_rgb_bias, dtype=torch.float32, device=x.device)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def effective_preview_method(server_default: str, extra_data: Mapping[str, Any]) -> str:
    """The one place the preview method is decided: ``extra_data.preview_method`` overrides the server's
    ``--preview-method`` unless it is missing, "default" or unknown (ComfyUI semantics)."""
    requested = extra_data.get("preview_method")
    if isinstance(requested, str) and requested in PREVIEW_METHODS:
        return requested
    return server_default


def latent_preview(source: LatentFormat | ModelHandle, latent: torch.Tensor,
                   method: str = "latent2rgb") -> Image.Image | None:
    """PIL preview of a model-space latent (a sampler callback's x0), one pixel per latent cell.

    ``source`` is a LatentFormat or a MODEL handle. Returns None for ``method`` "none" or a format without
    preview factors. Every other method uses the factor matrix. The event sink shrinks the image to the
    server's ``--preview-size`` when it encodes the frame, so it is not resized here.
    """
    import torch
    from PIL import Image

    fmt = source if isinstance(source, LatentFormat) else source.latent_format
    if method in ("none", "") or not fmt.latent_rgb_factors:
        return None
    rgb = latent_to_rgb(latent, fmt)
    return Image.fromarray((rgb * 255.0).round().to(torch.uint8).cpu().numpy(), mode="RGB")


def taesd_decoder_file(fmt: LatentFormat, vae_approx_files: Iterable[str]) -> str | None:
    """The format's TAESD decoder among ``models/vae_approx``'s file names (``<taesd>_decoder.*``), or None."""
    if not fmt.taesd:
        return None
    return next((f for f in sorted(vae_approx_files) if f.startswith(f"{fmt.taesd}_decoder.")), None)


_DECODERS: dict[tuple[str, int], TinyAutoencoder] = {}
_DECODERS_LOCK = threading.Lock()


def load_taesd_decoder(path: Path, latent_channels: int) -> TinyAutoencoder:
    """A TAESD decoder file as a ``TinyAutoencoder`` (scale 1, shift 0: it decodes model-space latents), loaded
    once per process and file."""
    import torch

    from engine.errors import UnknownModelError
    from engine.networks.taesd import TinyAutoencoder
    from engine.state_files import read_state_dict

    key = (str(path), latent_channels)
    with _DECODERS_LOCK:
        cached = _DECODERS.get(key)
        if cached is not None:
            return cached
        sd, _ = read_state_dict(path)
        with torch.device("meta"):
            taesd = TinyAutoencoder(latent_channels)
        try:
            taesd.taesd_decoder.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
        except RuntimeError as exc:
            first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
            raise UnknownModelError(f"{path.name}: not a TAESD decoder for {latent_channels}-channel latents "
                                    f"({first[:300]})") from exc
        taesd.to_empty(device="cpu", recurse=False)  # the scale / shift parameters (the decoder took its tensors)
        with torch.no_grad():
            taesd.vae_scale.fill_(1.0)
            taesd.vae_shift.fill_(0.0)
        taesd.taesd_encoder = torch.nn.Sequential()  # previews decode only
        _DECODERS[key] = taesd.eval()
        return taesd


def taesd_image(taesd: TinyAutoencoder, x0: torch.Tensor) -> Image.Image:
    """The first latent of ``x0`` decoded by a TAESD as an RGB image (8x the latent's size)."""
    import torch
    from PIL import Image

    with torch.inference_mode():
        rgb = taesd.to(x0.device).decode(x0[:1].float())[0]
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).movedim(0, -1)
    return Image.fromarray(pixels.cpu().numpy(), mode="RGB")


def step_previewer(source: LatentFormat | ModelHandle, method: str,
                   decoder: Path | None = None) -> Callable[[torch.Tensor], Image.Image | None]:
    """The per-step preview of a sampling run: ``taesd`` / ``auto`` with the format's ``decoder`` file decode x0
    with TAESD (full resolution); ``taesd`` without one warns and, like every other method but ``none``, uses
    latent2rgb."""
    fmt = source if isinstance(source, LatentFormat) else source.latent_format
    if method in ("none", ""):
        return lambda x0: None
    if method in ("taesd", "auto") and decoder is not None:
        taesd = load_taesd_decoder(decoder, fmt.latent_channels)
        return lambda x0: taesd_image(taesd, x0)
    if method == "taesd":
        log.warning("TAESD previews asked for, but models/vae_approx has no %s_decoder file for %s latents; "
                    "previewing with latent2rgb", fmt.taesd, fmt.name)
    return lambda x0: latent_preview(fmt, x0, "latent2rgb")
