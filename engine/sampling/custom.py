"""Custom sampling (ComfyUI's SamplerCustom / SamplerCustomAdvanced): noise, guider and sampler as values.

A NOISE value draws the initial noise for a LATENT dict, a GUIDER value holds a model with its
conditioning and guidance scale, a SAMPLER value names a sampler; ``sample_custom`` runs them over an
explicit sigma list through the same ``ksampler.sample`` the KSampler node uses (with ``sigmas=`` and
``sampler=``), so latent scaling, the starting noise level, noise-mask inpainting, inpaint-model
channels, ADM vectors, CFG and its model_options hooks, and per-step noise are identical.

    GaussianNoise(seed).generate_noise(latent) -> Tensor      # == KSampler's noise for that seed
    EmptyNoise().generate_noise(latent) -> zeros
    CFGGuide(model, positive, negative, cfg).sample(noise, latent_image, sampler, sigmas, ...) -> Tensor
    run_custom(guider, noise, latent_image, sampler, sigmas, ...) -> CustomResult(samples, denoised)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from engine.handles import ModelHandle
from engine.sampling.ksampler import sample
from engine.sampling.noise import prepare_noise
from engine.sampling.samplers import SamplerSpec, get_sampler
from engine.sampling.schedulers import append_zero
from engine.types import Conditioning, Guider, ProgressCallback

__all__ = [
    "CFGGuide",
    "CustomResult",
    "EmptyNoise",
    "GaussianNoise",
    "SamplerChoice",
    "basic_guide",
    "flip_sigmas",
    "polyexponential_sigmas",
    "resolve_sampler",
    "run_custom",
    "sample_custom",
    "sd_turbo_sigmas",
    "split_sigmas",
    "split_sigmas_denoise",
]


# ------------------------------------------------------------------------------------------------ noise
@dataclass(frozen=True)
class GaussianNoise:
    """ComfyUI's ``Noise_RandomNoise``: KSampler's initial noise for ``seed`` (``batch_index`` honoured)."""

    seed: int

    def generate_noise(self, input_latent: Mapping[str, Any]) -> torch.Tensor:
        """CPU float32 ``randn`` of the latent's shape after seeding, drawn per index with ``batch_index``."""
        return prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


@dataclass(frozen=True)
class EmptyNoise:
    """ComfyUI's ``Noise_EmptyNoise``: zeros (sampling starts from the latent itself); ``seed`` is 0."""

    seed: int = 0

    def generate_noise(self, input_latent: Mapping[str, Any]) -> torch.Tensor:
        """Zeros of the latent's shape, dtype and layout, on the CPU."""
        latent: torch.Tensor = input_latent["samples"]
        return torch.zeros(latent.shape, dtype=latent.dtype, layout=latent.layout, device="cpu")


# ---------------------------------------------------------------------------------------------- sampler
@dataclass(frozen=True)
class SamplerChoice:
    """A SAMPLER value: a sampler name plus keyword options for its function (ComfyUI's ``KSAMPLER``)."""

    sampler_name: str
    extra_options: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> SamplerSpec:
        """The engine's spec for this name, with ``extra_options`` bound to the sampler function."""
        base = get_sampler(self.sampler_name)
        if not self.extra_options:
            return base
        params = inspect.signature(base.fn).parameters
        unknown = sorted(k for k in self.extra_options if k not in params)
        if unknown:
            raise ValueError(f"sampler {self.sampler_name!r} does not take option(s) {', '.join(unknown)}; "
                             f"it takes: {', '.join(p for p in params if p not in _SAMPLER_ARGS) or 'none'}")
        return SamplerSpec(partial(base.fn, **self.extra_options), base.noise, base.discard_penultimate_sigma,
                           base.random_inpaint_noise)


_SAMPLER_ARGS = {"model", "x", "sigmas", "noise_sampler", "callback"}


def resolve_sampler(sampler: Any) -> SamplerSpec:
    """A SamplerSpec from a SAMPLER value: SamplerChoice, SamplerSpec, a name, or a ComfyUI-style
    object with ``sampler_name`` (and optional ``extra_options``), such as ``comfy.samplers.KSAMPLER``."""
    if isinstance(sampler, SamplerSpec):
        return sampler
    if isinstance(sampler, SamplerChoice):
        return sampler.spec()
    if isinstance(sampler, str):
        return get_sampler(sampler)
    name = getattr(sampler, "sampler_name", None)
    if isinstance(name, str):
        return SamplerChoice(name, dict(getattr(sampler, "extra_options", None) or {})).spec()
    raise TypeError(f"expected a SAMPLER (e.g. from KSamplerSelect), got {type(sampler).__name__}")


# ----------------------------------------------------------------------------------------------- sample
def _check_sigmas(sigmas: Any) -> torch.Tensor:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        got = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise TypeError(f"expected SIGMAS (a 1-d tensor of decreasing noise levels), got {got}")
    return sigmas.to(torch.float32)


def sample_custom(model: ModelHandle, noise: torch.Tensor, cfg: float, sampler: Any, sigmas: torch.Tensor,
                  positive: Conditioning, negative: Conditioning, latent_image: torch.Tensor, *,
                  noise_mask: torch.Tensor | None = None, callback: ProgressCallback | None = None,
                  seed: int | None = None) -> torch.Tensor:
    """ComfyUI's ``comfy.sample.sample_custom``: sample over ``sigmas`` exactly as given.

    Returns the raw (unscaled) latent on the CPU; an empty ``sigmas`` returns ``latent_image`` unchanged.
    ``seed`` seeds the per-step noise of stochastic samplers (as KSampler's seed does).
    """
    sigmas = _check_sigmas(sigmas)
    spec = resolve_sampler(sampler)
    steps = max(1, sigmas.shape[-1] - 1)
    return sample(model, noise, steps, cfg, "euler", "normal", positive, negative, latent_image,
                  noise_mask=noise_mask, callback=callback, seed=seed, sigmas=sigmas, sampler=spec)


@dataclass(frozen=True, eq=False)  # identity: conditioning holds tensors
class CFGGuide:
    """A GUIDER value: model, positive / negative conditioning and CFG scale (ComfyUI's ``CFGGuider``).

    ``BasicGuider`` is ``CFGGuide(model, conditioning, [], 1.0)``: at cfg 1 the negative side is skipped.
    """

    model: ModelHandle
    positive: Conditioning
    negative: Conditioning
    cfg: float

    @property
    def model_patcher(self) -> ModelHandle:
        """ComfyUI's name for the guider's model handle (packs read it)."""
        return self.model

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any, sigmas: torch.Tensor,
               denoise_mask: torch.Tensor | None = None, callback: ProgressCallback | None = None,
               disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
        """``CFGGuider.sample``: raw latent in, raw latent out (CPU), over ``sigmas`` as given."""
        return sample_custom(self.model, noise, self.cfg, sampler, sigmas, self.positive, self.negative,
                             latent_image, noise_mask=denoise_mask, callback=callback, seed=seed)


def basic_guide(model: ModelHandle, conditioning: Conditioning) -> CFGGuide:
    """ComfyUI's ``BasicGuider``: the conditioning alone, no negative pass."""
    return CFGGuide(model, conditioning, [], 1.0)


@dataclass(frozen=True)
class CustomResult:
    """Sampled latent and the last step's x0 prediction (``None`` when no step ran), both raw and on the CPU."""

    samples: torch.Tensor
    denoised: torch.Tensor | None


def _process_out(model: ModelHandle, x0: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = model.latent_format.process_out(x0)
    return out


def run_custom(guider: Guider, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any, sigmas: torch.Tensor,
               *, noise_mask: torch.Tensor | None = None, callback: ProgressCallback | None = None,
               seed: int | None = None) -> CustomResult:
    """SamplerCustomAdvanced's run: ``guider.sample`` plus the final x0 (its ``denoised_output``)."""
    last: dict[str, torch.Tensor] = {}

    def on_step(step: int, x0: torch.Tensor, x: torch.Tensor, total: int) -> None:
        last["x0"] = x0
        if callback is not None:
            callback(step, x0, x, total)

    samples = guider.sample(noise, latent_image, sampler, sigmas, denoise_mask=noise_mask, callback=on_step,
                            seed=seed)
    denoised = None
    if "x0" in last:
        denoised = _process_out(guider.model_patcher, last["x0"].to(torch.float32).cpu())
    return CustomResult(samples.cpu(), denoised)


# ------------------------------------------------------------------------------------------ sigma tools
def split_sigmas(sigmas: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas[:step+1], sigmas[step:]): both halves share the sigma at ``step``."""
    return sigmas[: step + 1], sigmas[step:]


def split_sigmas_denoise(sigmas: torch.Tensor, denoise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split so the low half has ``round(steps * denoise)`` steps (ComfyUI's slicing, quirks included:
    at 0 steps the high half is empty, as ``sigmas[:-0]`` is)."""
    steps = max(sigmas.shape[-1] - 1, 0)
    low_steps = round(steps * denoise)
    return sigmas[:-low_steps], sigmas[-(low_steps + 1):]


def flip_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Reverse the schedule (for unsampling); a leading 0 becomes 1e-4 so the first step is defined."""
    if len(sigmas) == 0:
        return sigmas
    flipped = sigmas.flip(0)
    if flipped[0] == 0:
        flipped[0] = 0.0001
    return flipped


def polyexponential_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """k-diffusion's polynomial-in-log-sigma schedule (rho 1 is the exponential schedule)."""
    ramp = torch.linspace(1, 0, steps) ** rho
    return append_zero((ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)).exp())


def sd_turbo_sigmas(model_sampling: Any, steps: int, denoise: float) -> torch.Tensor:
    """SDTurboScheduler: timesteps 999, 899, ... 99, starting ``10 - int(10 * denoise)`` entries in."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start: start + steps]
    sigmas: torch.Tensor = model_sampling.sigma(timesteps)
    return append_zero(sigmas)

