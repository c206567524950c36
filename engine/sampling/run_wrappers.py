"""Wrappers around a whole sampling, a sampler run, each guided prediction and each batch of model calls: where
ComfyUI's sampler calls a module-level function packs replace (``KSAMPLER.sample`` and ``sampling_function``) or runs
the wrappers packs register on a model (``outer_sample``, ``sampler_sample``, ``predict_noise``, ``calc_cond_batch``).

- A sampling: ``engine.sampling.ksampler.sample`` describes everything after its schedule as an ``OuterRun`` (raw
  noise and latent, sampler, sigmas, noise mask, callback, seed, conditioning, cfg) and calls ``outer_sample``.
  Each outer wrapper gets the run and ``proceed(run)``: the next wrapper or, last, the sampling of the run it is
  given (a wrapper may pass a changed run); it returns the raw output latent.
- A run: every sampling path (KSampler, KSamplerAdvanced, SamplerCustom, the guiders) ends in
  ``engine.sampling.ksampler.sample``, which describes its run as a ``SamplerRun`` and calls ``run_sampler``. Each
  run wrapper gets the run and ``proceed(run=None)``: the next wrapper or, last, Loom's sampler loop over the run it
  is given (default: its own; noise scaling at its first sigma and the inverse scaling at its last included), and
  returns the sampled latent in model space. A wrapper may read the run, change it (schedule, noise, latent, mask,
  seed, callback), or run code around it.
- A step: each guided prediction (``CFGDenoiser``) is a ``GuidanceStep``; each step wrapper gets it and
  ``proceed(step=None)``, the next wrapper or, last, Loom's CFG, over the step it is given (default: its own), and
  returns the guided x0.
- A batch: each call of ``engine.sampling.guider.calc_cond_batch`` (the batched model calls of the conds of each
  side) is a ``CondBatch``; each batch wrapper gets it and ``proceed(batch=None)`` and returns the x0 of each side.

Wrappers are process-wide and few: the ComfyUI compatibility layer installs them while a pack may call them
(``app/compat/comfy/samplers.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.installed import install_once, through_wrappers

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle
    from engine.sampling.conditioning import Cond

__all__ = ["OuterRun", "SamplerRun", "GuidanceStep", "CondBatch", "OuterWrapper", "RunWrapper", "StepWrapper",
           "BatchWrapper", "add_outer_wrapper", "add_run_wrapper", "add_step_wrapper", "add_batch_wrapper",
           "outer_sample", "run_sampler", "guided_step", "batched_calls"]


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class OuterRun:
    """One sampling as ComfyUI's guider ``outer_sample`` sees it (after the schedule is known).

    model: the model handle; noise, latent: the starting noise and the input latent (raw, not yet in model space);
    sampler: the SamplerSpec; sampler_name: its KSampler name (None for a SAMPLER value); sigmas: the schedule; noise_mask: the noise mask as given (None: no inpainting);
    callback: the per-step progress callback; seed: the run's seed; positive, negative, cfg: the conditioning (as
    nodes pass it) and CFG scale.
    """

    model: ModelHandle
    noise: torch.Tensor
    latent: torch.Tensor
    sampler: Any
    sampler_name: str | None
    sigmas: torch.Tensor
    noise_mask: torch.Tensor | None
    callback: Any
    seed: int | None
    positive: Any
    negative: Any
    cfg: float


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class SamplerRun:
    """One sampler run as ComfyUI's ``KSAMPLER.sample`` sees it.

    model: the model handle (its ``model_options`` are the run's); sampler: the SamplerSpec; sampler_name: its
    KSampler name, None for a SAMPLER value that has none; sigmas: the schedule; noise: the starting noise; latent:
    the input latent in model space; denoise_mask: the noise mask (1 = repaint) or None; seed: the run's seed;
    callback: the per-step progress callback ``(step, x0, x, total_steps)`` or None.
    """

    model: ModelHandle
    sampler: Any
    sampler_name: str | None
    sigmas: torch.Tensor
    noise: torch.Tensor
    latent: torch.Tensor
    denoise_mask: torch.Tensor | None
    seed: int | None
    callback: Any = None


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


@dataclass(frozen=True, eq=False)
class CondBatch:
    """One call of the batched model calls (ComfyUI's ``calc_cond_batch``): the model (handle), ``sides`` (a list of
    resolved conds per side, None to skip one), the noisy ``x`` at ``sigma`` and the model options (None: the
    handle's own)."""

    model: Any
    sides: list[list[Cond] | None]
    x: torch.Tensor
    sigma: torch.Tensor
    model_options: dict[str, Any] | None


OuterWrapper = Callable[[OuterRun, Callable[[OuterRun], "torch.Tensor"]], "torch.Tensor"]
RunWrapper = Callable[[SamplerRun, Callable[..., "torch.Tensor"]], "torch.Tensor"]  # proceed(run=None)
StepProceed = Callable[..., "torch.Tensor"]  # proceed(step: GuidanceStep | None = None)
StepWrapper = Callable[[GuidanceStep, StepProceed], "torch.Tensor"]
BatchWrapper = Callable[[CondBatch, Callable[..., "list[torch.Tensor]"]], "list[torch.Tensor]"]  # proceed(batch=None)

_OUTER_WRAPPERS: list[OuterWrapper] = []
_RUN_WRAPPERS: list[RunWrapper] = []
_STEP_WRAPPERS: list[StepWrapper] = []
_BATCH_WRAPPERS: list[BatchWrapper] = []


def add_outer_wrapper(wrapper: OuterWrapper) -> Callable[[], None]:
    """Install an outer wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_OUTER_WRAPPERS, wrapper)


def outer_sample(run: OuterRun, body: Callable[[OuterRun], torch.Tensor]) -> torch.Tensor:
    """``body(run)`` through the installed outer wrappers."""
    proceed = body
    for wrapper in list(_OUTER_WRAPPERS):
        proceed = _bind_outer(wrapper, proceed)
    return proceed(run)


def _bind_outer(wrapper: OuterWrapper, inner: Callable[[OuterRun], torch.Tensor]) -> Callable[[OuterRun], torch.Tensor]:
    return lambda run: wrapper(run, inner)


def add_run_wrapper(wrapper: RunWrapper) -> Callable[[], None]:
    """Install a run wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_RUN_WRAPPERS, wrapper)


def add_step_wrapper(wrapper: StepWrapper) -> Callable[[], None]:
    """Install a step wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_STEP_WRAPPERS, wrapper)


def add_batch_wrapper(wrapper: BatchWrapper) -> Callable[[], None]:
    """Install a batch wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_BATCH_WRAPPERS, wrapper)


def run_sampler(run: SamplerRun, loop: Callable[[SamplerRun], torch.Tensor]) -> torch.Tensor:
    """``loop(run)`` through the installed run wrappers (a wrapper's ``proceed(other)`` hands the rest another
    run)."""
    return through_wrappers(_RUN_WRAPPERS, loop, run)


def guided_step(step: GuidanceStep, cfg: Callable[[GuidanceStep], torch.Tensor]) -> torch.Tensor:
    """``cfg(step)`` through the installed step wrappers (no wrapper: a plain call); a wrapper's
    ``proceed(other)`` hands the rest of the chain another step."""
    return through_wrappers(_STEP_WRAPPERS, cfg, step)


def batched_calls(batch: CondBatch, calls: Callable[[CondBatch], list[torch.Tensor]]) -> list[torch.Tensor]:
    """``calls(batch)`` through the installed batch wrappers."""
    return through_wrappers(_BATCH_WRAPPERS, calls, batch)
