"""ComfyUI's `comfy.samplers` for packs: sampler / scheduler names and sigma schedules from Loom's engine.

The name lists are the ones Loom implements (so a pack's COMBO offers nothing that would fail later), from
`engine.names` (torch-free; equal to `engine.sampling`'s lists, which a test checks).

Packs that replace `KSAMPLER.sample` or `sampling_function` with their own function are called while this
module is loaded, with ComfyUI's arguments (engine.sampling.run_wrappers):
- `KSAMPLER.sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
  disable_pbar)` once per sampler run, `extra_args` holding a copy of the run's `model_options` and its `seed`;
  the original, called from there, runs Loom's sampler over the sigmas it is given;
- `sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options, seed)` for each guided
  prediction, `uncond` / `cond` the resolved cond lists, returning the guided x0 (the original is Loom's CFG).
A `CFGGuider` subclass's `predict_noise` is called the same way for each guided prediction of its own runs.

While it is loaded, the wrappers packs register on a MODEL (`outer_sample`, `sampler_sample`, `predict_noise`,
`calc_cond_batch`, `apply_model`, `diffusion_model`) and its `on_pre_run` / `on_cleanup` / `on_prepare_state`
callbacks run too (app/compat/_model_wrappers.py); the guider they see is the run's `CFGGuider` (the pack's own, or
one standing for KSampler's).
"""
from __future__ import annotations

import sys
from typing import Any

from app.compat import _model_wrappers
from app.compat._cond_dicts import from_dicts
from app.compat._environment import shim_still_loaded
from app.compat._model_wrappers import RunningGuider, guiding, running
from engine import names
from engine.model_call import ModelCall, NetworkCall, add_call_wrapper, add_network_wrapper
from engine.patching import add_registration_check
from engine.sampling.run_wrappers import (
    CondBatch,
    GuidanceStep,
    OuterRun,
    SamplerRun,
    add_batch_wrapper,
    add_outer_wrapper,
    add_run_wrapper,
    add_step_wrapper,
)

SAMPLER_NAMES: list[str] = list(names.SAMPLER_NAMES)
KSAMPLER_NAMES: list[str] = [n for n in SAMPLER_NAMES if n not in ("ddim", "uni_pc", "uni_pc_bh2")]
SCHEDULER_NAMES: list[str] = list(names.SCHEDULER_NAMES)


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

    def sample(self, model_wrap: Any, sigmas: Any, extra_args: Any, callback: Any, noise: Any,
               latent_image: Any = None, denoise_mask: Any = None, disable_pbar: bool = False) -> Any:
        """Loom's sampler over `sigmas` (from `noise`, `latent_image`, `denoise_mask`, `callback` and
        `extra_args["seed"]`) for the run `model_wrap` stands for (reached through a pack's replacement of this
        method); other callers pass this object as a SAMPLER instead."""
        if isinstance(model_wrap, LoomModelWrap):
            return model_wrap.proceed(_model_wrappers.run_from_sample_args(
                model_wrap.run, sigmas, extra_args, callback, noise, latent_image, denoise_mask))
        raise NotImplementedError("comfy.samplers.KSAMPLER.sample runs only inside Loom's sampler runs: pass the "
                                  "KSAMPLER to SamplerCustom / comfy.sample.sample_custom, which run Loom's sampler")


_LOOM_KSAMPLER_SAMPLE = KSAMPLER.sample


class LoomModelWrap:
    """The `model_wrap` a sampler run hands `KSAMPLER.sample`: ComfyUI's names for the run's model, and the
    rest of Loom's run (`proceed(run)`)."""

    def __init__(self, run: SamplerRun, proceed: Any, model_options: dict[str, Any]) -> None:
        self.run = run
        self.proceed = proceed
        self.model_patcher = run.model
        self.inner_model = getattr(run.model, "model", run.model)
        self.model_options = model_options


def _through_replaced_sample(run: SamplerRun, proceed: Any) -> Any:
    """A sampler run, through `KSAMPLER.sample` when a pack has replaced it (engine.sampling.run_wrappers)."""
    if not _loaded() or KSAMPLER.sample is _LOOM_KSAMPLER_SAMPLE:
        return proceed()
    sampler = KSAMPLER(run.sampler_name if run.sampler_name in SAMPLER_NAMES else SAMPLER_NAMES[0])
    model_options = dict(run.model.model_options)
    extra_args = {"model_options": model_options, "seed": run.seed, "denoise_mask": run.denoise_mask}
    return sampler.sample(LoomModelWrap(run, proceed, model_options), run.sigmas, extra_args, run.callback,
                          run.noise, run.latent, run.denoise_mask, True)


def sampler_object(name: str) -> KSAMPLER:
    """The SAMPLER object for `name`."""
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
        self.sigmas = self.calculate_sigmas(steps)

    def calculate_sigmas(self, steps: int) -> Any:
        """The schedule this sampler runs (steps + 1 sigmas; denoise < 1 keeps the tail of a longer one)."""
        from engine.sampling.ksampler import ksampler_sigmas
        from engine.sampling.samplers import get_sampler

        return ksampler_sigmas(self.model.model_sampling, self.scheduler, steps, self.denoise,
                               get_sampler(self.sampler))

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


def calc_cond_batch(model: Any, conds: list[Any], x_in: Any, timestep: Any, model_options: Any = None) -> list[Any]:
    """x0 predictions of each cond list (None: skipped) at `x_in`, `timestep` (sigma): Loom's batched model calls,
    with `model_options`' transformer patches (default: the model's own; e.g. skipped DiT blocks).

    The cond lists are the ones Loom's sampler hands its hooks (`args["conds"]`, resolved conditioning) or the
    cond dicts a `calc_cond_batch` wrapper was handed (app/compat/_cond_dicts.py)."""
    from engine.sampling.guider import calc_cond_batch as engine_calc_cond_batch

    return engine_calc_cond_batch(model, from_dicts(conds), x_in, timestep, model_options)


def cfg_function(model: Any, cond_pred: Any, uncond_pred: Any, cond_scale: float, x: Any, timestep: Any,
                 model_options: dict[str, Any] | None = None, cond: Any = None, uncond: Any = None) -> Any:
    """The guided x0 from a step's cond / uncond x0 predictions: the model options' `sampler_cfg_function` (or
    plain CFG), then each `sampler_post_cfg_function` (Loom's, engine.sampling.guider.cfg_function)."""
    from engine.sampling.guider import cfg_function as engine_cfg_function

    return engine_cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options or {}, cond=cond,
                               uncond=uncond)


def sampling_function(model: Any, x: Any, timestep: Any, uncond: Any, cond: Any, cond_scale: float,
                      model_options: dict[str, Any] | None = None, seed: int | None = None) -> Any:
    """The guided x0 at `x`, `timestep` (sigma): Loom's CFG with the model's CFG hooks (engine.sampling.guider).

    A pack's replacement of this name is called for every guided prediction instead (module docstring)."""
    from engine.sampling.guider import CFGDenoiser

    return CFGDenoiser(model, cond, uncond or [], cond_scale, model_options, seed).guide(x, timestep)


_LOOM_SAMPLING_FUNCTION = sampling_function


def _through_replaced_sampling_function(step: GuidanceStep, proceed: Any) -> Any:
    """A guided prediction, through `sampling_function` when a pack has replaced it."""
    if not _loaded() or sampling_function is _LOOM_SAMPLING_FUNCTION:
        return proceed()
    return sampling_function(step.model, step.x, step.sigma, step.negative, step.positive, step.cfg,
                             step.model_options, step.seed)


class CFGGuider:
    """ComfyUI's CFG guider (a GUIDER value), for packs that subclass it (KJNodes' scheduled CFG): `set_conds`,
    `set_cfg`, and `predict_noise(x, timestep, model_options, seed)`, which a subclass overrides and which is
    then called for every guided prediction of this guider's runs, with `self.conds` ({"positive", "negative"} and
    any other key set through `inner_set_conds`: the resolved cond lists), `self.inner_model` and `model_options["transformer_options"]["sample_sigmas"]` as
    ComfyUI sets them. Without an override the run is Loom's CFG sampler, unchanged."""

    def __init__(self, model_patcher: Any) -> None:
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.original_conds: dict[str, Any] = {}
        self.conds: dict[str, Any] = {}
        self.inner_model: Any = None
        self.cfg = 1.0

    def set_conds(self, positive: Any, negative: Any) -> None:
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg: float) -> None:
        self.cfg = cfg

    def inner_set_conds(self, conds: dict[str, Any]) -> None:
        self.original_conds.update(conds)

    def predict_noise(self, x: Any, timestep: Any, model_options: Any = None, seed: int | None = None) -> Any:
        """The guided x0 at `x`, `timestep` (sigma): `sampling_function` over this guider's conds and cfg."""
        return sampling_function(self.inner_model, x, timestep, self.conds.get("negative"),
                                 self.conds.get("positive"), self.cfg, model_options=model_options, seed=seed)

    def __call__(self, x: Any, timestep: Any, model_options: Any = None, seed: int | None = None) -> Any:
        return self.predict_noise(x, timestep, model_options or {}, seed)

    def sample(self, noise: Any, latent_image: Any, sampler: Any, sigmas: Any, denoise_mask: Any = None,
               callback: Any = None, disable_pbar: bool = False, seed: int | None = None) -> Any:
        """Raw latent in, raw latent out (CPU), over `sigmas` as given (SamplerCustomAdvanced calls this)."""
        from engine.sampling.custom import sample_custom

        own = type(self).predict_noise is not CFGGuider.predict_noise
        with guiding(RunningGuider(self, own, self._extra_conds()) if own else RunningGuider(self)):
            return sample_custom(self.model_patcher, noise, self.cfg, sampler, sigmas,
                                 self.original_conds.get("positive") or [], self.original_conds.get("negative") or [],
                                 latent_image, noise_mask=denoise_mask, callback=callback, seed=seed)

    def _extra_conds(self) -> dict[str, Any]:
        """Resolvers of the conds set beyond positive / negative (Guider_PerpNeg's empty prompt), each with its
        entries' `prompt_type` (default: its key, as ComfyUI encodes them)."""
        from engine.sampling.guiders import ThirdCondPrediction

        extra = {}
        for key, conditioning in self.original_conds.items():
            if key in ("positive", "negative") or conditioning is None:
                continue
            declared = conditioning[0][1].get("prompt_type", key) if conditioning else key
            extra[key] = ThirdCondPrediction(conditioning, "negative" if declared == "negative" else "positive", key)
        return extra


def _guider_for(model: Any, positive: Any, negative: Any, cfg: float) -> CFGGuider:
    """The guider of the sampling in progress, or one standing for KSampler's (ComfyUI's KSampler runs a
    CFGGuider too)."""
    current = running()
    if current is not None and current.guider.model_patcher is model:
        return current.guider  # type: ignore[no-any-return]
    guider = CFGGuider(model)
    guider.original_conds.update({"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    guider.inner_model = model
    return guider


def _sampler_for(run: OuterRun | SamplerRun) -> Any:
    """ComfyUI's SAMPLER object for a run: a KSAMPLER for a named sampler, else Loom's sampler spec."""
    return KSAMPLER(run.sampler_name) if run.sampler_name in SAMPLER_NAMES else run.sampler


def _through_model_outer_sample(run: OuterRun, proceed: Any) -> Any:
    """A sampling, through the MODEL's `outer_sample` wrappers and run callbacks."""
    if not _loaded():
        return proceed(run)
    return _model_wrappers.run_outer_sample(run, proceed, lambda r: _guider_for(r.model, r.positive, r.negative,
                                                                                 r.cfg), _sampler_for)


def _through_model_sampler_sample(run: SamplerRun, proceed: Any) -> Any:
    """A sampler run, through the MODEL's `sampler_sample` wrappers."""
    if not _loaded():
        return proceed()
    return _model_wrappers.run_sampler_sample(run, proceed, _sampler_for)


def _through_model_calc_cond_batch(batch: CondBatch, proceed: Any) -> Any:
    """Batched model calls, through the MODEL's `calc_cond_batch` wrappers and `on_prepare_state` callbacks."""
    if not _loaded():
        return proceed()
    return _model_wrappers.run_calc_cond_batch(batch, proceed)


def _through_model_diffusion_model(call: NetworkCall, proceed: Any) -> Any:
    """A network forward, through the MODEL's `diffusion_model` wrappers."""
    if not _loaded():
        return proceed()
    return _model_wrappers.run_diffusion_model(call, proceed)


def _through_model_predict_noise(step: GuidanceStep, proceed: Any) -> Any:
    """A guided prediction, through the MODEL's `predict_noise` wrappers."""
    if not _loaded():
        return proceed()
    return _model_wrappers.run_predict_noise(step, proceed, lambda s: _guider_for(s.model, s.positive, s.negative,
                                                                                   s.cfg))


def _through_model_apply_model(call: ModelCall, proceed: Any) -> Any:
    """A model call, through the MODEL's `apply_model` wrappers."""
    if not _loaded():
        return proceed()
    return _model_wrappers.run_apply_model(call, proceed)


def _through_guider_predict_noise(step: GuidanceStep, proceed: Any) -> Any:
    """A guided prediction of a CFGGuider subclass's run, through its `predict_noise`."""
    active = running()
    if active is None or not active.own_predict or not _loaded():
        return proceed()
    guider = active.guider
    guider.conds = {"positive": step.positive, "negative": step.negative or None,
                    **{key: resolver.resolve(step.model, step.x, step.sigma) for key, resolver in active.extra.items()}}
    guider.inner_model = step.model
    with guiding(RunningGuider(guider)):  # a sampler run inside predict_noise is not guided by it again
        return guider.predict_noise(step.x, step.sigma, step.model_options, step.seed)


class KSamplerX0Inpaint:
    """ComfyUI's inpainting wrapper around a sampler's model; Loom's sampler applies the noise mask itself
    (engine.sampling.guider.InpaintDenoiser). Packs may import the name; building one is refused."""

    def __init__(self, model: Any, sigmas: Any) -> None:
        raise NotImplementedError("comfy.samplers.KSamplerX0Inpaint is not provided by Loom: its sampler applies "
                                  "inpaint masks itself (engine.sampling.guider.InpaintDenoiser)")


def _cond_internal(name: str) -> Any:
    """One of ComfyUI's per-cond preparation / batching steps: packs import (and some replace) them; Loom's sampler
    prepares and batches conds itself, so calling one is refused and replacing one changes nothing."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"comfy.samplers.{name} is not provided by Loom: its sampler prepares areas and "
                                  "masks and batches conds itself (engine.sampling.guider)")

    refused.__name__ = refused.__qualname__ = name
    return refused


get_area_and_mult = _cond_internal("get_area_and_mult")
can_concat_cond = _cond_internal("can_concat_cond")
cond_cat = _cond_internal("cond_cat")
process_conds = _cond_internal("process_conds")


def _check_registration(patcher: Any, section: str, kind: str) -> None:
    """A patcher refuses the wrapper / callback types Loom does not run on it (while this module is loaded)."""
    if _loaded():
        _model_wrappers.check_runnable(section, kind, patcher)


def _loaded() -> bool:
    return shim_still_loaded(__name__, _THIS_MODULE, _remove_run_wrapper, _remove_step_wrapper,
                             _remove_guider_wrapper, _remove_outer_wrapper, _remove_predict_wrapper,
                             _remove_call_wrapper, _remove_registration_check, _remove_sampler_sample_wrapper,
                             _remove_batch_wrapper, _remove_network_wrapper)


_THIS_MODULE = sys.modules[__name__]
_remove_run_wrapper = add_run_wrapper(_through_replaced_sample)
_remove_step_wrapper = add_step_wrapper(_through_replaced_sampling_function)
_remove_guider_wrapper = add_step_wrapper(_through_guider_predict_noise)
# installed after the guider's: ComfyUI runs predict_noise wrappers around a guider's own predict_noise
_remove_predict_wrapper = add_step_wrapper(_through_model_predict_noise)
_remove_outer_wrapper = add_outer_wrapper(_through_model_outer_sample)
_remove_call_wrapper = add_call_wrapper(_through_model_apply_model)
# installed after the replaced-sample one: ComfyUI runs sampler_sample wrappers around `sampler.sample`
_remove_sampler_sample_wrapper = add_run_wrapper(_through_model_sampler_sample)
_remove_batch_wrapper = add_batch_wrapper(_through_model_calc_cond_batch)
_remove_network_wrapper = add_network_wrapper(_through_model_diffusion_model)
_remove_registration_check = add_registration_check(_check_registration)
