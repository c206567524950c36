"""ComfyUI's model wrappers and callbacks (``comfy.patcher_extension``) on Loom's wrapper points.

A pack registers them on a MODEL (``model.add_wrapper_with_key(WrappersMP.X, key, fn)``, kept in the handle's
``wrappers``) or in a ``model_options`` dict (``comfy.patcher_extension.add_wrapper_with_key(..., model_options,
is_model_options=True)``, kept in ``transformer_options["wrappers"]``); both are run, the MODEL's first, keys in
registration order, as ComfyUI merges them. Each chain runs through ``WrapperExecutor`` with ComfyUI's arguments:

- ``outer_sample`` (``engine.sampling.run_wrappers`` outer point): ``(noise, latent_image, sampler, sigmas,
  denoise_mask, callback, disable_pbar, seed, latent_shapes=[latent_image.shape])``, raw latents, ``executor.class_obj`` the guider; returns the raw
  output latent. What a wrapper passes on (another schedule, noise, latent, mask, sampler, seed) is what runs, and
  so are the guider's ``model_options`` when a wrapper replaces them (AnimateDiff-Evolved puts its run state there).
  The MODEL's ``on_pre_run`` / ``on_cleanup`` callbacks (``fn(model)``) run just inside the chain, as ComfyUI's,
  and its injections (``set_injections``) are injected before them and ejected after; the module patchers among its
  additional models (``set_additional_models``: ``comfy.model_patcher.ModelPatcher(module, ...)``) are loaded onto
  their device before the injections and offloaded after.
- ``prepare_sampling`` (inside ``outer_sample``, before the sampler runs): ``(model, noise_shape, conds,
  model_options)``; Loom's model manager places the models itself, so the innermost call only returns
  ``(model, conds, [])``.
- ``sampler_sample`` (run point, outermost: around a pack's ``KSAMPLER.sample`` replacement): ``(guider, sigmas,
  extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)``, ``latent_image`` in model space,
  ``extra_args`` ``{"model_options": a copy with transformer_options["sample_sigmas"], "seed"}``,
  ``executor.class_obj`` the SAMPLER; returns the sampled latent in model space. What a wrapper passes on (schedule,
  noise, latent, mask, callback, ``extra_args["seed"]``) is what runs; changes to the ``model_options`` copy are
  not seen by Loom's sampler.
- ``predict_noise`` (step point, outermost): ``(x, timestep, model_options, seed)``, ``timestep`` the sigma,
  ``executor.class_obj`` the guider; returns the guided x0.
- ``calc_cond_batch`` (batch point): ``(model, conds, x_in, timestep, model_options)``, ``model`` the MODEL handle,
  ``conds`` one list of ComfyUI cond dicts per side (None: skipped; ``app/compat/_cond_dicts.py``), ``timestep`` the
  sigma, ``executor.class_obj`` None;
  returns the x0 of each side. The MODEL's ``on_prepare_state`` callbacks (``fn(model, timestep)``) run just inside
  the chain, before the model calls, as ComfyUI's.
- ``apply_model`` (``engine.model_call``): ``(x, t, c_concat, c_crossattn, control, transformer_options, y=...)``,
  ``t`` the sigma, ``executor.class_obj`` the MODEL's ``comfy.model_base`` view; returns x0.
- ``diffusion_model`` (network point, inside ``apply_model``): ``(x, timesteps, context, y, control,
  transformer_options)`` (ComfyUI's UNet order, for every network), ``x`` scaled with extra channels joined,
  ``timesteps`` the network's, ``executor.class_obj`` the network module (its stored weights: weight patches are
  applied inside the original); returns the network's raw output.

The compatibility module ``comfy.samplers`` installs these while it is loaded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from app.compat._cond_dicts import from_dicts, to_dicts
from engine.handles import ModelHandle
from engine.model_call import NETWORK_INPUTS
from engine.module_patcher import ModulePatcher

if TYPE_CHECKING:
    import torch

    from engine.model_call import ModelCall, NetworkCall
    from engine.sampling.run_wrappers import CondBatch, GuidanceStep, OuterRun, SamplerRun

__all__ = ["RUNNABLE_WRAPPERS", "RUNNABLE_CALLBACKS", "MODULE_CALLBACKS", "RunningGuider", "check_runnable", "guiding", "registered",
           "running", "run_outer_sample", "run_sampler_sample", "run_predict_noise", "run_calc_cond_batch",
           "run_apply_model", "run_diffusion_model"]

# the ComfyUI wrapper / callback types (comfy.patcher_extension) Loom runs; a MODEL refuses the others
RUNNABLE_WRAPPERS = ("outer_sample", "sampler_sample", "prepare_sampling", "predict_noise", "calc_cond_batch",
                     "apply_model", "diffusion_model")
RUNNABLE_CALLBACKS = ("on_clone", "on_pre_run", "on_cleanup", "on_prepare_state")
# on a module patcher (``ModelPatcher(module, ...)``: no sampler runs wrappers around a bare module) Loom calls these
MODULE_CALLBACKS = ("on_clone", "on_pre_run", "on_cleanup", "on_load_after")


def check_runnable(section: str, kind: str, patcher: Any = None) -> None:
    """NotImplementedError naming ``kind`` unless it is a ``section`` ("wrapper" / "callback") type Loom runs (on
    ``patcher`` when given: a module patcher takes no wrappers)."""
    if isinstance(patcher, ModulePatcher) and not isinstance(patcher, ModelHandle):
        runnable: tuple[str, ...] = () if section == "wrapper" else MODULE_CALLBACKS
    else:
        runnable = RUNNABLE_WRAPPERS if section == "wrapper" else RUNNABLE_CALLBACKS
    if kind not in runnable:
        raise NotImplementedError(f"a ComfyUI model {section} of type {kind!r}: Loom's sampler does not run that "
                                  f"type (it runs {', '.join(runnable) or 'none here'}), so the node that registers one cannot "
                                  "work here")


@dataclass(frozen=True)
class RunningGuider:
    """The guider (``comfy.samplers.CFGGuider``) of the sampling in progress: the ``class_obj`` its MODEL's wrappers
    see. ``own_predict``: its own (overridden) ``predict_noise`` guides each step now, with ``extra`` (the resolvers
    of its conds beyond positive / negative)."""

    guider: Any
    own_predict: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# the guider of the sampling in progress in this thread / task
_RUNNING: ContextVar[RunningGuider | None] = ContextVar("loom_compat_running_guider", default=None)


def running() -> RunningGuider | None:
    """The guider of the sampling in progress (None: none)."""
    return _RUNNING.get()


@contextlib.contextmanager
def guiding(record: RunningGuider | None) -> Iterator[None]:
    """``record`` as the guider of the sampling in progress inside the block."""
    token = _RUNNING.set(record)
    try:
        yield
    finally:
        _RUNNING.reset(token)


def registered(model: Any, transformer_options: dict[str, Any] | None, kind: str,
               section: str = "wrappers") -> list[Callable[..., Any]]:
    """The MODEL's ``section`` functions of ``kind`` and then those in ``transformer_options`` (ComfyUI's merge:
    the MODEL's keys first; one key's lists joined)."""
    table = {key: list(fns) for key, fns in (getattr(model, section, None) or {}).get(kind, {}).items()}
    for key, fns in ((transformer_options or {}).get(section) or {}).get(kind, {}).items():
        table.setdefault(key, []).extend(fns)
    return [fn for fns in table.values() for fn in fns]


def _model_transformer_options(model: Any) -> dict[str, Any] | None:
    options = getattr(model, "model_options", None)
    return options.get("transformer_options") if isinstance(options, dict) else None


def _executor(original: Callable[..., Any], class_obj: object, wrappers: list[Callable[..., Any]]) -> Any:
    # the shim packs see (this runs only while it is loaded)
    from comfy.patcher_extension import WrapperExecutor

    return WrapperExecutor.new_class_executor(original, class_obj, wrappers)


def run_outer_sample(run: OuterRun, proceed: Callable[[OuterRun], torch.Tensor],
                     guider_for: Callable[[OuterRun], Any], sampler_for: Callable[[OuterRun], Any]) -> torch.Tensor:
    """A sampling through the MODEL's ``outer_sample`` wrappers and ``on_pre_run`` / ``on_cleanup`` callbacks;
    ``guider_for`` / ``sampler_for`` give ComfyUI's guider and SAMPLER objects for the run."""
    model = run.model
    guider = guider_for(run)
    current = running()
    record = current if current is not None and current.guider is guider else RunningGuider(guider)
    wrappers = registered(model, _model_transformer_options(model), "outer_sample")
    pre_run = registered(model, None, "on_pre_run", "callbacks")
    cleanup = registered(model, None, "on_cleanup", "callbacks")
    injections = [i for items in model.injections.values() for i in items]
    modules = [m for m in model.get_additional_models()  # the manager places MODEL handles itself
               if isinstance(m, ModulePatcher) and not isinstance(m, ModelHandle)]
    prepares = registered(model, _model_transformer_options(model), "prepare_sampling")
    if not (wrappers or pre_run or cleanup or injections or modules or prepares):
        with guiding(record):
            return proceed(run)
    sampler = sampler_for(run)

    def original(noise: torch.Tensor, latent_image: torch.Tensor, sampler_arg: Any, sigmas: torch.Tensor,
                 denoise_mask: torch.Tensor | None = None, callback: Any = None, disable_pbar: bool = False,
                 seed: int | None = None, latent_shapes: list[Any] | None = None) -> torch.Tensor:
        if latent_shapes is not None and len(latent_shapes) > 1:
            raise NotImplementedError(f"outer_sample: {len(latent_shapes)} packed latents (latent_shapes): Loom's "
                                      "sampler runs one latent")
        changed = run
        if sampler_arg is not sampler:
            from engine.sampling.custom import resolve_sampler

            changed = replace(run, sampler=resolve_sampler(sampler_arg),
                              sampler_name=getattr(sampler_arg, "sampler_name", None))
        changed = replace(changed, noise=noise, latent=latent_image, sigmas=sigmas, noise_mask=denoise_mask,
                          callback=callback, seed=seed)
        options = getattr(guider, "model_options", None)
        if isinstance(options, dict) and options is not model.model_options:
            runner = model.clone()
            runner.model_options = options
            changed = replace(changed, model=runner)
        injected: list[Any] = []
        loaded: list[ModulePatcher] = []
        try:
            for module in modules:
                loaded.append(module)
                module.load(module.load_device, 0, False, True)
            for injection in injections:
                injection.inject(model)
                injected.append(injection)
            for callback_fn in pre_run:
                callback_fn(model)
            _prepare_sampling(changed, guider)
            try:
                return proceed(changed)
            finally:
                for callback_fn in cleanup:
                    callback_fn(model)
        finally:
            for injection in reversed(injected):
                injection.eject(model)
            for module in loaded:
                module.offload()

    with guiding(record):
        out: torch.Tensor = _executor(original, guider, wrappers).execute(
            run.noise, run.latent, sampler, run.sigmas, run.noise_mask, run.callback, False, run.seed,
            latent_shapes=[run.latent.shape])
    return out


def _prepare_sampling(run: OuterRun, guider: Any) -> None:
    """The MODEL's ``prepare_sampling`` wrappers (and those in the run's model options), around nothing: Loom's model
    manager places the models when they run."""
    options = run.model.model_options
    wrappers = registered(run.model, options.get("transformer_options"), "prepare_sampling")
    if not wrappers:
        return

    def original(model: Any, noise_shape: Any, conds: Any, model_options: Any = None, *args: Any,
                 **kwargs: Any) -> tuple[Any, Any, list[Any]]:
        return model, conds, []

    _executor(original, guider, wrappers).execute(run.model, tuple(run.noise.shape), getattr(guider, "conds", {}),
                                                  options)


def run_sampler_sample(run: SamplerRun, proceed: Callable[..., torch.Tensor],
                       sampler_for: Callable[[SamplerRun], Any]) -> torch.Tensor:
    """A sampler run through the MODEL's ``sampler_sample`` wrappers (class_obj: ComfyUI's SAMPLER for the run)."""
    options = run.model.model_options
    wrappers = registered(run.model, options.get("transformer_options"), "sampler_sample")
    if not wrappers:
        return proceed()
    current = running()
    guider = current.guider if current is not None else None
    transformer = {**(options.get("transformer_options") or {}), "sample_sigmas": run.sigmas}
    extra_args = {"model_options": {**options, "transformer_options": transformer}, "seed": run.seed}

    def original(guider_arg: Any, sigmas: torch.Tensor, extra_args_arg: dict[str, Any], callback: Any,
                 noise: torch.Tensor, latent_image: torch.Tensor | None = None,
                 denoise_mask: torch.Tensor | None = None, disable_pbar: bool = False) -> torch.Tensor:
        return proceed(run_from_sample_args(run, sigmas, extra_args_arg, callback, noise, latent_image, denoise_mask))

    out: torch.Tensor = _executor(original, sampler_for(run), wrappers).execute(
        guider, run.sigmas, extra_args, run.callback, run.noise, run.latent, run.denoise_mask, False)
    return out


def run_from_sample_args(run: SamplerRun, sigmas: torch.Tensor, extra_args: Any, callback: Any,
                         noise: torch.Tensor, latent_image: torch.Tensor | None,
                         denoise_mask: torch.Tensor | None) -> SamplerRun:
    """The sampler run that ``KSAMPLER.sample``'s arguments describe (``run`` itself where nothing changed)."""
    seed = extra_args.get("seed", run.seed) if isinstance(extra_args, dict) else run.seed
    latent = run.latent if latent_image is None else latent_image
    if (sigmas is run.sigmas and noise is run.noise and latent is run.latent and denoise_mask is run.denoise_mask
            and callback is run.callback and seed == run.seed):
        return run
    return replace(run, sigmas=sigmas, noise=noise, latent=latent, denoise_mask=denoise_mask, callback=callback,
                   seed=seed)


def run_predict_noise(step: GuidanceStep, proceed: Callable[..., torch.Tensor],
                      guider_for: Callable[[GuidanceStep], Any]) -> torch.Tensor:
    """A guided prediction through the MODEL's ``predict_noise`` wrappers (class_obj: the run's guider)."""
    wrappers = registered(step.model, step.model_options.get("transformer_options"), "predict_noise")
    if not wrappers:
        return proceed()
    guider = guider_for(step)

    def original(x: torch.Tensor, timestep: torch.Tensor, model_options: dict[str, Any] | None = None,
                 seed: int | None = None) -> torch.Tensor:
        options = step.model_options if model_options is None else model_options
        if x is step.x and timestep is step.sigma and options is step.model_options and seed == step.seed:
            return proceed()
        return proceed(replace(step, x=x, sigma=timestep, model_options=options, seed=seed))

    out: torch.Tensor = _executor(original, guider, wrappers).execute(step.x, step.sigma, step.model_options,
                                                                      step.seed)
    return out


def run_apply_model(call: ModelCall, proceed: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A model call through the MODEL's ``apply_model`` wrappers (class_obj: its ``comfy.model_base`` view)."""
    options = call.transformer_options
    wrappers = registered(call.model, options if options is not None else _model_transformer_options(call.model),
                          "apply_model")
    if not wrappers:
        return proceed()
    given = options if options is not None else {}
    kwargs = {**(call.extra_inputs or {}), **({} if call.y is None else {"y": call.y})}

    def original(x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                 c_crossattn: torch.Tensor | None = None, control: Any = None,
                 transformer_options: dict[str, Any] | None = None, **extra: Any) -> torch.Tensor:
        passed = options if transformer_options is given else (transformer_options or None)
        inputs = {k: extra[k] for k in NETWORK_INPUTS if extra.get(k) is not None}
        return proceed(replace(call, x=x, sigma=t, concat=c_concat, context=c_crossattn, control=control,
                               y=extra.get("y"), transformer_options=passed, extra_inputs=inputs or None))

    out: torch.Tensor = _executor(original, call.model.model, wrappers).execute(
        call.x, call.sigma, call.concat, call.context, call.control, given, **kwargs)
    return out


def run_calc_cond_batch(batch: CondBatch, proceed: Callable[..., list[torch.Tensor]]) -> list[torch.Tensor]:
    """Batched model calls through the MODEL's ``calc_cond_batch`` wrappers, its ``on_prepare_state`` callbacks
    just inside them."""
    options = batch.model_options if batch.model_options is not None else getattr(batch.model, "model_options", {})
    wrappers = registered(batch.model, options.get("transformer_options"), "calc_cond_batch")
    if not (wrappers or registered(batch.model, None, "on_prepare_state", "callbacks")):
        return proceed()

    def original(model: Any, conds: list[Any], x_in: torch.Tensor, timestep: torch.Tensor,
                 model_options: dict[str, Any]) -> list[torch.Tensor]:
        for callback in registered(model, None, "on_prepare_state", "callbacks"):
            callback(model, timestep)
        # the records back, with what the wrapper replaced in (copies of) the dicts
        return proceed(replace(batch, model=model, sides=from_dicts(conds), x=x_in, sigma=timestep,
                               model_options=model_options))

    given = to_dicts(batch.sides)
    out: list[torch.Tensor] = _executor(original, None, wrappers).execute(batch.model, given, batch.x, batch.sigma,
                                                                           options)
    return out


def run_diffusion_model(call: NetworkCall, proceed: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A network forward through the MODEL's ``diffusion_model`` wrappers (class_obj: the network)."""
    options = call.kwargs.get("transformer_options")
    wrappers = registered(call.model, options if options is not None else _model_transformer_options(call.model),
                          "diffusion_model")
    if not wrappers:
        return proceed()
    given = options if options is not None else {}
    rest = {k: v for k, v in call.kwargs.items() if k not in ("context", "y", "control", "transformer_options")}

    def original(x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                 y: torch.Tensor | None = None, control: Any = None,
                 transformer_options: dict[str, Any] | None = None, **extra: Any) -> torch.Tensor:
        kwargs: dict[str, Any] = {"context": context, "y": y, **extra}
        if control is not None:
            kwargs["control"] = control
        passed = options if transformer_options is given else transformer_options
        if passed is not None:
            kwargs["transformer_options"] = passed
        return proceed(replace(call, x=x, timesteps=timesteps, kwargs=kwargs))

    out: torch.Tensor = _executor(original, call.network, wrappers).execute(
        call.x, call.timesteps, call.kwargs.get("context"), call.kwargs.get("y"), call.kwargs.get("control"), given,
        **rest)
    return out
