"""Wrappers around one sampler run: the moment ComfyUI calls ``KSAMPLER.sample(model_wrap, sigmas, ...)``.

Every sampling path (KSampler, KSamplerAdvanced, SamplerCustom, the guiders) ends in ``engine.sampling.ksampler
.sample``, which describes its run as a ``SamplerRun`` and hands it to ``run_sampler``. Each installed wrapper gets
the run and ``proceed(sigmas)``, the next wrapper or, last, Loom's sampler loop over that schedule (noise scaling
at its first sigma included); a wrapper may look at the run, change the schedule, or run code around it.

Wrappers are process-wide and few: the ComfyUI compatibility layer installs one while it is installed (packs that
replace ``comfy.samplers.KSAMPLER.sample`` are called through it, app.compat._environment).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at import: the compatibility layer installs its wrapper before torch is needed
    import torch

    from engine.handles import ModelHandle

__all__ = ["SamplerRun", "Proceed", "RunWrapper", "add_run_wrapper", "run_sampler"]

Proceed = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class SamplerRun:
    """One sampler run as ComfyUI's ``KSAMPLER.sample`` sees it.

    model: the model handle (its ``model_options`` are the run's); sampler_name: the KSampler name, None for a
    SAMPLER value that has none; sigmas: the schedule; noise: the starting noise; latent: the input latent in
    model space; denoise_mask: the noise mask (1 = repaint) or None; seed: the run's seed.
    """

    model: ModelHandle
    sampler_name: str | None
    sigmas: torch.Tensor
    noise: torch.Tensor
    latent: torch.Tensor
    denoise_mask: torch.Tensor | None
    seed: int | None


RunWrapper = Callable[[SamplerRun, Proceed], "torch.Tensor"]

_WRAPPERS: list[RunWrapper] = []


def add_run_wrapper(wrapper: RunWrapper) -> Callable[[], None]:
    """Install ``wrapper`` once (the most recently installed runs outermost); returns the function that removes
    it again."""
    if wrapper not in _WRAPPERS:
        _WRAPPERS.append(wrapper)

    def remove() -> None:
        if wrapper in _WRAPPERS:
            _WRAPPERS.remove(wrapper)
    return remove


def run_sampler(run: SamplerRun, loop: Proceed) -> torch.Tensor:
    """``loop(run.sigmas)`` through the installed wrappers (the most recently installed outermost)."""
    proceed = loop
    for wrapper in list(_WRAPPERS):
        proceed = _bind(wrapper, run, proceed)
    return proceed(run.sigmas)


def _bind(wrapper: RunWrapper, run: SamplerRun, inner: Proceed) -> Proceed:
    def call(sigmas: torch.Tensor) -> torch.Tensor:
        return wrapper(run if sigmas is run.sigmas else replace(run, sigmas=sigmas), inner)
    return call
