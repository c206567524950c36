"""ComfyUI's `comfy.samplers` for packs: sampler / scheduler names and sigma schedules from Loom's engine.

The name lists are the ones Loom implements (so a pack's COMBO offers nothing that would fail later):
`engine.sampling.SAMPLER_NAMES` / `SCHEDULER_NAMES`, else the built-in KSampler's own option lists.
"""
from __future__ import annotations

from typing import Any

from app.compat._environment import handles_for

_loom = handles_for(__name__)  # this Loom instance's objects


def _names(attr: str, ksampler_input: str, fallback: list[str]) -> list[str]:
    try:
        import engine.sampling as sampling

        names = getattr(sampling, attr, None)
        if names is None and attr == "SCHEDULER_NAMES":
            from engine.sampling.schedulers import SCHEDULER_NAMES as names
        if names:
            return list(names)
    except ImportError:
        pass
    registry = _loom.registry
    if registry is not None and "KSampler" in registry:
        try:
            options = registry.get("KSampler").INPUT_TYPES()["required"][ksampler_input][0]
            if isinstance(options, (list, tuple)):
                return list(options)
        except Exception:
            pass
    return list(fallback)


SAMPLER_NAMES: list[str] = _names("SAMPLER_NAMES", "sampler_name", ["euler"])
KSAMPLER_NAMES: list[str] = [n for n in SAMPLER_NAMES if n not in ("ddim", "uni_pc", "uni_pc_bh2")]
SCHEDULER_NAMES: list[str] = _names("SCHEDULER_NAMES", "scheduler", ["normal"])


def calc_cond_batch(model: Any, conds: list[Any], x_in: Any, timestep: Any, model_options: dict[str, Any]) -> Any:
    """ComfyUI's `calc_cond_batch`: the x0 prediction of each cond list (None skips one) at `x_in`, `timestep`
    (sigma), with `model_options`' transformer patches (e.g. skipped DiT blocks); `model` and `conds` as a
    sampler hook's args hand them over."""
    from engine.sampling.guider import calc_cond_batch as engine_calc_cond_batch

    return engine_calc_cond_batch(model, conds, x_in, timestep, model_options)


def calculate_sigmas(model_sampling: Any, scheduler_name: str, steps: int) -> Any:
    """Sigmas (steps+1 values ending in 0) of the named schedule for a model's `model_sampling`."""
    from engine.sampling.schedulers import calculate_sigmas as engine_calculate_sigmas

    if hasattr(model_sampling, "model_sampling") and not hasattr(model_sampling, "sigma_max"):
        model_sampling = model_sampling.model_sampling  # a MODEL handle was passed
    return engine_calculate_sigmas(model_sampling, scheduler_name, steps)


class KSAMPLER:
    """A SAMPLER value: the sampler's name plus extra options (what SamplerCustom-style nodes pass on)."""

    def __init__(self, sampler_name: str, extra_options: dict[str, Any] | None = None,
                 inpaint_options: dict[str, Any] | None = None) -> None:
        if sampler_name not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {sampler_name!r}; Loom implements: {', '.join(SAMPLER_NAMES)}")
        self.sampler_name = sampler_name
        self.extra_options = dict(extra_options or {})
        self.inpaint_options = dict(inpaint_options or {})

    def __repr__(self) -> str:
        return f"KSAMPLER({self.sampler_name!r})"


def sampler_object(name: str) -> Any:
    """The SAMPLER object for `name` (the engine's own when it defines one)."""
    try:
        import engine.sampling as sampling

        make = getattr(sampling, "sampler_object", None)
        if callable(make):
            return make(name)
    except ImportError:
        pass
    return KSAMPLER(name)


def ksampler(sampler_name: str, extra_options: dict[str, Any] | None = None,
             inpaint_options: dict[str, Any] | None = None) -> KSAMPLER:
    return KSAMPLER(sampler_name, extra_options, inpaint_options)


class KSampler:
    """ComfyUI's KSampler helper object: names as class attributes, `sample(...)` over the engine."""

    SCHEDULERS = SCHEDULER_NAMES
    SAMPLERS = SAMPLER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}

    def __init__(self, model: Any, steps: int, device: Any, sampler: str | None = None,
                 scheduler: str | None = None, denoise: float | None = None,
                 model_options: dict[str, Any] | None = None) -> None:
        self.model = model
        self.device = device
        self.sampler = sampler or SAMPLER_NAMES[0]
        self.scheduler = scheduler or SCHEDULER_NAMES[0]
        self.denoise = 1.0 if denoise is None else denoise
        self.steps = steps
        self.model_options = model_options or {}

    def sample(self, noise: Any, positive: Any, negative: Any, cfg: float, latent_image: Any = None,
               start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False,
               denoise_mask: Any = None, sigmas: Any = None, callback: Any = None, disable_pbar: bool = False,
               seed: int | None = None) -> Any:
        import comfy.sample

        return comfy.sample.sample(
            self.model, noise, self.steps, cfg, self.sampler, self.scheduler, positive, negative, latent_image,
            denoise=self.denoise, start_step=start_step, last_step=last_step,
            force_full_denoise=force_full_denoise, noise_mask=denoise_mask, callback=callback, seed=seed,
        )
