"""KSampler and KSamplerAdvanced: noise, engine sampling, progress + preview + interrupt per step."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, input_error, progress_context

if TYPE_CHECKING:
    import torch


__all__ = ["KSampler", "KSamplerAdvanced", "common_ksampler", "sampler_names", "scheduler_names"]

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def sampler_names() -> list[str]:
    """The engine's implemented sampler names (spec option order)."""
    from engine import names as sampling  # torch-free: read by /object_info and validation at start-up

    return list(sampling.SAMPLER_NAMES)


def scheduler_names() -> list[str]:
    """The engine's implemented scheduler names (spec option order)."""
    from engine import names as sampling  # torch-free: read by /object_info and validation at start-up

    return list(sampling.SCHEDULER_NAMES)


def _latent2rgb(model: Any, x0: torch.Tensor) -> Any:
    """Cheap preview: the latent format's linear latent->RGB factors, as a PIL image."""
    import torch
    from PIL import Image

    fmt = getattr(model, "latent_format", None)
    factors = getattr(fmt, "latent_rgb_factors", None)
    if not factors or x0.shape[1] != len(factors):
        return None
    weight = torch.tensor(factors, dtype=torch.float32, device=x0.device)
    rgb = torch.einsum("chw,cr->hwr", x0[0].float(), weight)
    bias = getattr(fmt, "latent_rgb_bias", None)
    if bias is not None:
        rgb = rgb + torch.tensor(bias, dtype=torch.float32, device=x0.device)
    arr = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(arr)


def _make_preview(model: Any, x0: torch.Tensor, method: str) -> Any:
    engine_preview: Any
    try:
        from engine import preview as engine_preview
    except ImportError:
        engine_preview = None
    make = getattr(engine_preview, "latent_preview", None) if engine_preview is not None else None
    if make is not None:
        return make(model, x0, method)
    return _latent2rgb(model, x0)


def _callback(preview_method: str, model: Any) -> Any:
    ctx = progress_context()
    if ctx is None:
        return None
    # A prompt's `extra_data.preview_method` overrides the server's default (ComfyUI semantics).
    requested = (getattr(ctx, "extra_data", None) or {}).get("preview_method")
    if requested in ("none", "auto", "latent2rgb", "taesd"):
        preview_method = requested

    def on_step(step: int, x0: Any, x: Any, total_steps: int) -> None:
        ctx.check_interrupt()
        preview = None
        if preview_method not in ("none", "") and x0 is not None:
            preview = _make_preview(model, x0, preview_method)
        ctx.progress(step + 1, total_steps, preview=preview)

    return on_step


def _fix_empty_latent_channels(model: Any, latent: torch.Tensor) -> torch.Tensor:
    channels = getattr(getattr(model, "latent_format", None), "latent_channels", None)
    if channels and latent.shape[1] != channels and not latent.any():
        repeats = max(1, channels // latent.shape[1])
        latent = latent.repeat(1, repeats, 1, 1)[:, :channels]
    return latent


def _with_adm(model: Any, conditioning: Any, latent_shape: Any, prompt_type: str) -> Any:
    """Entries carrying the model's ADM `y` vector (SDXL size / refiner aesthetic score); SD1/SD2 unchanged."""
    adm = getattr(model, "adm", None)
    if adm is None or not isinstance(conditioning, list):
        return conditioning
    out = []
    for cond, opts in conditioning:
        if opts.get("y") is None:
            y = adm(opts, tuple(latent_shape), prompt_type)
            if y is not None:
                opts = {**opts, "y": y}
        out.append([cond, opts])
    return out


def common_ksampler(model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive: Any, negative: Any, latent: dict[str, Any], *, preview_method: str = "none",
                    denoise: float = 1.0, disable_noise: bool = False, start_step: int | None = None,
                    last_step: int | None = None, force_full_denoise: bool = False,
                    node_class: str = "KSampler") -> tuple[dict[str, Any]]:
    """ComfyUI's `common_ksampler`: initial noise from the seed, engine sampling, LATENT copy out."""
    import torch

    from engine import sampling

    if model is None:
        raise input_error(node_class, "model", "the model is None; connect a loader's MODEL output")
    if not isinstance(latent, dict) or "samples" not in latent:
        raise input_error(node_class, "latent_image", f"expected a LATENT dict, got {type(latent).__name__}")
    latent_image = _fix_empty_latent_channels(model, latent["samples"])
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout,
                            device="cpu")
    else:
        noise = sampling.prepare_noise(latent_image, seed, latent.get("batch_index"))
    positive = _with_adm(model, positive, latent_image.shape, "positive")
    negative = _with_adm(model, negative, latent_image.shape, "negative")
    samples = sampling.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
        denoise=denoise, disable_noise=disable_noise, start_step=start_step, last_step=last_step,
        force_full_denoise=force_full_denoise, noise_mask=latent.get("noise_mask"),
        callback=_callback(preview_method, model), seed=seed,
    )
    out = dict(latent)
    out["samples"] = samples
    return (out,)


class KSampler(BuiltinNode):
    """Denoise a latent with a model, positive/negative conditioning, sampler and scheduler."""

    DISPLAY_NAME = "KSampler"
    CATEGORY = "sampling"
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                                 "tooltip": "The random seed used for creating the noise."}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                                  "tooltip": "The number of steps used in the denoising process."}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "The Classifier-Free Guidance scale."}),
                "sampler_name": (sampler_names(), {"tooltip": "The algorithm used when sampling."}),
                "scheduler": (scheduler_names(), {"tooltip": "How noise is removed step by step."}),
                "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
                "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
                "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "The amount of denoising applied."}),
            }
        }

    def sample(self, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: Any, negative: Any, latent_image: dict[str, Any],
               denoise: float = 1.0) -> tuple[dict[str, Any]]:
        return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                               latent_image, denoise=denoise, preview_method=self._services().preview_method)


class KSamplerAdvanced(BuiltinNode):
    """KSampler with a step window, optional noise and leftover noise (two-stage refiner workflows)."""

    DISPLAY_NAME = "KSampler (Advanced)"
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL",),
                "add_noise": (["enable", "disable"],),
                "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (sampler_names(),),
                "scheduler": (scheduler_names(),),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
                "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
                "return_with_leftover_noise": (["disable", "enable"],),
            }
        }

    def sample(self, model: Any, add_noise: str, noise_seed: int, steps: int, cfg: float, sampler_name: str,
               scheduler: str, positive: Any, negative: Any, latent_image: dict[str, Any], start_at_step: int,
               end_at_step: int, return_with_leftover_noise: str,
               denoise: float = 1.0) -> tuple[dict[str, Any]]:
        return common_ksampler(
            model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
            denoise=denoise, disable_noise=add_noise == "disable", start_step=start_at_step,
            last_step=end_at_step, force_full_denoise=return_with_leftover_noise != "enable",
            preview_method=self._services().preview_method, node_class="KSamplerAdvanced",
        )


NODES = [KSampler, KSamplerAdvanced]
