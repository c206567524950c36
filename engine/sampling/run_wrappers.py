"""Wrappers around a sampler run and around each guided prediction: the two places where ComfyUI's sampler calls
a module-level function packs replace (``KSAMPLER.sample`` and ``sampling_function``).

- A run: every sampling path (KSampler, KSamplerAdvanced, SamplerCustom, the guiders) ends in
  ``engine.sampling.ksampler.sample``, which describes its run as a ``SamplerRun`` and calls ``run_sampler``. Each
  run wrapper gets the run and ``proceed(sigmas)``: the next wrapper or, last, Loom's sampler loop over that
  schedule (noise scaling at its first sigma included). A wrapper may read the run, change the schedule, or run
  code around it.
- A step: each guided prediction (``CFGDenoiser``) is a ``GuidanceStep``; each step wrapper gets it and
  ``proceed()``, the next wrapper or, last, Loom's CFG, and returns the guided x0.

Wrappers are process-wide and few: the ComfyUI compatibility layer installs one of each while a pack may call them
(``app/compat/comfy/samplers.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from engine.installed import install_once

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle
    from engine.sampling.conditioning import Cond

__all__ = ["SamplerRun", "GuidanceStep", "Proceed", "RunWrapper", "StepWrapper", "add_run_wrapper",
           "add_step_wrapper", "run_sampler", "guided_step"]

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


@dataclass(frozen=True, eq=False)
class GuidanceStep:
    """One guided prediction as ComfyUI's ``sampling_function`` sees it: the model (handle), the noisy ``x`` at
    ``sigma``, the resolved positive / negative conds, the CFG scale, the model options and the run's seed."""

    model: Any
    x: torch.Tensor
    sigma: torch.Tensor
    positive: list[Cond]
    negative: list[Cond]
    cfg: float
    model_options: dict[str, Any]
    seed: int | None


RunWrapper = Callable[[SamplerRun, Proceed], "torch.Tensor"]
StepWrapper = Callable[[GuidanceStep, Callable[[], "torch.Tensor"]], "torch.Tensor"]

_RUN_WRAPPERS: list[RunWrapper] = []
_STEP_WRAPPERS: list[StepWrapper] = []


def add_run_wrapper(wrapper: RunWrapper) -> Callable[[], None]:
    """Install a run wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_RUN_WRAPPERS, wrapper)


def add_step_wrapper(wrapper: StepWrapper) -> Callable[[], None]:
    """Install a step wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_STEP_WRAPPERS, wrapper)


def run_sampler(run: SamplerRun, loop: Proceed) -> torch.Tensor:
    """``loop(run.sigmas)`` through the installed run wrappers."""
    proceed = loop
    for wrapper in list(_RUN_WRAPPERS):
        proceed = _bind_run(wrapper, run, proceed)
    return proceed(run.sigmas)


def _bind_run(wrapper: RunWrapper, run: SamplerRun, inner: Proceed) -> Proceed:
    def call(sigmas: torch.Tensor) -> torch.Tensor:
        return wrapper(run if sigmas is run.sigmas else replace(run, sigmas=sigmas), inner)
    return call


def guided_step(step: GuidanceStep, cfg: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``cfg()`` through the installed step wrappers (no wrapper: a plain call)."""
    proceed = cfg
    for wrapper in list(_STEP_WRAPPERS):
        proceed = _bind_step(wrapper, step, proceed)
    return proceed()


def _bind_step(wrapper: StepWrapper, step: GuidanceStep, inner: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    return lambda: wrapper(step, inner)
