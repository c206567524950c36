"""KSampler and KSamplerAdvanced: noise, engine sampling, progress + preview + interrupt per step."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.types import Conditioning, Latent, latent_copy
from nodes._base import BuiltinNode, InputTypes, engine_reports, input_error, latent_samples, progress_context

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle
    from engine.paths import ModelPaths
    from engine.types import ProgressCallback


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


def _callback(preview_method: str, model: ModelHandle, paths: ModelPaths | None = None) -> ProgressCallback | None:
    """Per step: interrupt check, progress and (when previews are on) a preview of x0: TAESD when the method asks
    for it (or is "auto") and ``paths``' vae_approx folder has the family's decoder, else latent2rgb."""
    ctx = progress_context()
    if ctx is None:
        return None
    from engine.preview import effective_preview_method, step_previewer, taesd_decoder_file

    method = effective_preview_method(preview_method, ctx.extra_data)
    decoder = None
    if method in ("taesd", "auto") and paths is not None:
        name = taesd_decoder_file(model.latent_format, paths.get_filename_list("vae_approx"))
        found = paths.get_full_path("vae_approx", name) if name else None
        decoder = Path(found) if found else None
    preview = step_previewer(model, method, decoder)

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        ctx.check_interrupt()
        ctx.progress(step + 1, total_steps, preview=preview(x0) if x0 is not None else None)

    return on_step


def common_ksampler(model: ModelHandle, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive: Conditioning, negative: Conditioning, latent: Latent, *, preview_method: str = "none",
                    preview_paths: ModelPaths | None = None,
                    denoise: float = 1.0, disable_noise: bool = False, start_step: int | None = None,
                    last_step: int | None = None, force_full_denoise: bool = False,
                    node_class: str = "KSampler") -> tuple[Latent]:
    """ComfyUI's `common_ksampler`: initial noise from the seed, engine sampling, LATENT copy out.

    The engine decides the rest (empty-latent channels, disable_noise, the ADM vector)."""
    from engine import sampling
    from engine.sampling.ksampler import fix_empty_latent_channels

    if model is None:
        raise input_error(node_class, "model", "the model is None; connect a loader's MODEL output")
    latent_image = fix_empty_latent_channels(model, latent_samples(latent, node_class, "latent_image"))
    noise = sampling.prepare_noise(latent_image, seed, latent.get("batch_index"))
    with engine_reports():
        samples = sampling.sample(
            model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
            denoise=denoise, disable_noise=disable_noise, start_step=start_step, last_step=last_step,
            force_full_denoise=force_full_denoise, noise_mask=latent.get("noise_mask"),
            callback=_callback(preview_method, model, preview_paths), seed=seed,
        )
    return (latent_copy(latent, samples),)


class KSampler(BuiltinNode):
    """Denoise a latent with a model, positive/negative conditioning, sampler and scheduler."""

    DISPLAY_NAME = "KSampler"
    CATEGORY = "sampling"
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
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

    def sample(self, model: ModelHandle, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: Conditioning, negative: Conditioning, latent_image: Latent,
               denoise: float = 1.0) -> tuple[Latent]:
        return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                               latent_image, denoise=denoise, preview_method=self._services().preview_method,
                               preview_paths=self._services().paths)


class KSamplerAdvanced(BuiltinNode):
    """KSampler with a step window, optional noise and leftover noise (two-stage refiner workflows)."""

    DISPLAY_NAME = "KSampler (Advanced)"
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
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

    def sample(self, model: ModelHandle, add_noise: str, noise_seed: int, steps: int, cfg: float,
               sampler_name: str, scheduler: str, positive: Conditioning, negative: Conditioning,
               latent_image: Latent, start_at_step: int, end_at_step: int, return_with_leftover_noise: str,
               denoise: float = 1.0) -> tuple[Latent]:
        return common_ksampler(
            model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
            denoise=denoise, disable_noise=add_noise == "disable", start_step=start_at_step,
            last_step=end_at_step, force_full_denoise=return_with_leftover_noise != "enable",
            preview_method=self._services().preview_method, preview_paths=self._services().paths,
            node_class="KSamplerAdvanced",
        )


NODES = [KSampler, KSamplerAdvanced]
