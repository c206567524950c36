"""ComfyUI's `latent_preview` for packs: the sampler callback that reports progress (+ previews), the
previewers (`Latent2RGBPreviewer`, `TAESDPreviewerImpl`) and `TAESD` (Loom's `engine.networks.taesd`)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from comfy.cli_args import LatentPreviewMethod, args  # noqa: F401  (ComfyUI's module has them; packs read them)
from comfy.taesd.taesd import TAESD  # noqa: F401  (ComfyUI's module has it; packs import it from here)

MAX_PREVIEW_RESOLUTION = int(args.preview_size)


class LatentPreviewer:
    def decode_latent_to_preview(self, x0: Any) -> Any:
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format: str, x0: Any) -> tuple[str, Any, int]:
        return preview_format, self.decode_latent_to_preview(x0), MAX_PREVIEW_RESOLUTION


class TAESDPreviewerImpl(LatentPreviewer):
    """Decodes the first latent of the batch with a TAESD (full resolution)."""

    def __init__(self, taesd: Any) -> None:
        self.taesd = taesd

    def decode_latent_to_preview(self, x0: Any) -> Any:
        from engine.preview import taesd_image

        return taesd_image(self.taesd, x0)


class Latent2RGBPreviewer(LatentPreviewer):
    """Projects the first latent of the batch to RGB with the latent format's factor matrix."""

    def __init__(self, latent_rgb_factors: Any, latent_rgb_factors_bias: Any = None) -> None:
        import torch

        self.factors = torch.tensor(latent_rgb_factors, dtype=torch.float32)
        self.bias = torch.tensor(latent_rgb_factors_bias, dtype=torch.float32) if latent_rgb_factors_bias else None

    def decode_latent_to_preview(self, x0: Any) -> Any:
        from PIL import Image

        rgb = x0[0].float().cpu().movedim(0, -1) @ self.factors
        if self.bias is not None:
            rgb = rgb + self.bias
        arr = (((rgb + 1.0) / 2.0).clamp(0, 1) * 255).round().byte().numpy()
        return Image.fromarray(arr)


def get_previewer(device: Any, latent_format: Any) -> LatentPreviewer | None:
    """The previewer of the prompt's preview method: TAESD for "taesd" / "auto" when models/vae_approx has the
    format's decoder, else Latent2RGB when the format has RGB factors; None when previews are off."""
    from engine.preview import effective_preview_method, load_taesd_decoder

    method = args.preview_method.value  # the server's default (ComfyUI-Manager may change it)
    ctx = _context()
    if ctx is not None:
        method = effective_preview_method(method, getattr(ctx, "extra_data", None) or {})
    if method == "none":
        return None
    decoder = _taesd_decoder(latent_format) if method in ("taesd", "auto") else None
    if decoder is not None:
        return TAESDPreviewerImpl(load_taesd_decoder(decoder, int(getattr(latent_format, "latent_channels", 4))))
    factors = getattr(latent_format, "latent_rgb_factors", None)
    if not factors:
        return None
    bias = getattr(latent_format, "latent_rgb_factors_bias", None) or getattr(latent_format, "latent_rgb_bias", None)
    return Latent2RGBPreviewer(factors, bias)


def _taesd_decoder(latent_format: Any) -> Path | None:
    """models/vae_approx's `<taesd_decoder_name>.*` file of a ComfyUI latent format, or None."""
    import folder_paths

    stem = getattr(latent_format, "taesd_decoder_name", None)
    name = next((f for f in sorted(folder_paths.get_filename_list("vae_approx")) if stem and f.startswith(f"{stem}.")),
                None)
    path = folder_paths.get_full_path("vae_approx", name) if name else None
    return Path(path) if path else None


def _context() -> Any:
    from executor.context import current

    return current()


def prepare_callback(model: Any, steps: int, x0_output_dict: dict[str, Any] | None = None) -> Callable[..., None]:
    """`callback(step, x0, x, total_steps)` that updates a ProgressBar of the running node (+ preview)."""
    import comfy.utils

    previewer = get_previewer(None, getattr(model, "latent_format", None))
    pbar = comfy.utils.ProgressBar(steps)

    def callback(step: int, x0: Any, x: Any, total_steps: int) -> None:
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview = None
        if previewer is not None and x0 is not None:
            preview = previewer.decode_latent_to_preview_image("JPEG", x0)
        pbar.update_absolute(step + 1, total_steps, preview)

    return callback


def set_preview_method(override: str | None = None) -> None:
    """Accepted for compatibility; Loom takes the preview method per prompt from extra_data."""
    return None

