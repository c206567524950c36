"""ComfyUI's model wrappers and callbacks (``comfy.patcher_extension``) on Loom's wrapper points.

A pack registers them on a MODEL (``model.add_wrapper_with_key(WrappersMP.X, key, fn)``, kept in the handle's
``wrappers``) or in a ``model_options`` dict (``comfy.patcher_extension.add_wrapper_with_key(..., model_options,
is_model_options=True)``, kept in ``transformer_options["wrappers"]``); both are run, the MODEL's first, keys in
registration order, as ComfyUI merges them. Each chain runs through ``WrapperExecutor`` with ComfyUI's arguments:

- ``outer_sample`` (``engine.sampling.run_wrappers`` outer point): ``(noise, latent_image, sampler, sigmas,
  denoise_mask, callback, disable_pbar, seed)``, raw latents, ``executor.class_obj`` the guider; returns the raw
  output latent. What a wrapper passes on (another schedule, noise, latent, mask, sampler, seed) is what runs, and
  so are the guider's ``model_options`` when a wrapper replaces them (AnimateDiff-Evolved puts its run state there).
  The MODEL's ``on_pre_run`` / ``on_cleanup`` callbacks (``fn(model)``) run just inside the chain, as ComfyUI's,
  and its injections (``set_injections``) are injected before them and ejected after; the module patchers among its
  additional models (``set_additional_models``: ``comfy.model_patcher.ModelPatcher(module, ...)``) are loaded onto
  their device before the injections and offloaded after.
- ``predict_noise`` (step point, outermost): ``(x, timestep, model_options, seed)``, ``timestep`` the sigma,
  ``executor.class_obj`` the guider; returns the guided x0.
- ``calc_cond_batch`` (``engine.sampling.run_wrappers`` batch point): ``(model, conds, x_in, timestep,
  model_options)``, ``model`` the MODEL's ``comfy.model_base`` view (a wrapper may pass it or the MODEL on),
  ``conds`` one list of ComfyUI cond dicts per side (None: skipped; ``app/compat/_cond_dicts.py``), ``timestep`` the
  sigma; returns one x0 per cond list.
- ``prepare_sampling`` (inside ``outer_sample``, before the sampler runs): ``(model, noise_shape, conds,
  model_options)``; Loom's model manager places the models itself, so the innermost call only returns
  ``(model, conds, [])``.
- ``diffusion_model`` (``engine.model_call`` network point, inside ``apply_model``): ``(x, timesteps, context=,
  y=, control=, transformer_options=)`` as Loom's network takes them, ``executor.class_obj`` the network; returns
  its output (AnimateDiff-Evolved swaps group norms around it).
- ``apply_model`` (``engine.model_call``): ``(x, t, c_concat, c_crossattn, control, transformer_options, y=...)``,
  ``t`` the sigma, ``executor.class_obj`` the MODEL's ``comfy.model_base`` view; returns x0.

The compatibility module ``comfy.samplers`` installs these while it is loaded.
"""
from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.compat._cond_dicts import from_dicts, to_dicts
from engine.handles import ModelHandle
from engine.module_patcher import ModulePatcher

if TYPE_CHECKING:
    import torch

    from engine.model_call import ModelCall, NetworkCall
    from engine.sampling.run_wrappers import CondBatch, GuidanceStep, OuterRun

__all__ = ["registered", "run_outer_sample", "run_predict_noise", "run_calc_cond_batch", "run_apply_model",
           "run_diffusion_model"]

# the guider object of the sampling in progress (this thread / task): what predict_noise wrappers see as class_obj
_RUN_GUIDER: ContextVar[Any] = ContextVar("loom_compat_run_guider", default=None)


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
    wrappers = registered(model, _model_transformer_options(model), "outer_sample")
    pre_run = registered(model, None, "on_pre_run", "callbacks")
    cleanup = registered(model, None, "on_cleanup", "callbacks")
    predicts = registered(model, _model_transformer_options(model), "predict_noise")
    injections = [i for items in model.injections.values() for i in items]
    modules = [m for m in model.get_additional_models()  # the manager places MODEL handles itself
               if isinstance(m, ModulePatcher) and not isinstance(m, ModelHandle)]
    prepares = registered(model, _model_transformer_options(model), "prepare_sampling")
    if not (wrappers or pre_run or cleanup or predicts or injections or modules or prepares):
        return proceed(run)
    guider = guider_for(run)
    sampler = sampler_for(run)

    def original(noise: torch.Tensor, latent_image: torch.Tensor, sampler_arg: Any, sigmas: torch.Tensor,
                 denoise_mask: torch.Tensor | None = None, callback: Any = None, disable_pbar: bool = False,
                 seed: int | None = None) -> torch.Tensor:
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
        injected = []
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

    token = _RUN_GUIDER.set(guider)
    try:
        out: torch.Tensor = _executor(original, guider, wrappers).execute(
            run.noise, run.latent, sampler, run.sigmas, run.noise_mask, run.callback, False, run.seed)
    finally:
        _RUN_GUIDER.reset(token)
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


def run_predict_noise(step: GuidanceStep, proceed: Callable[..., torch.Tensor],
                      guider_for: Callable[[GuidanceStep], Any]) -> torch.Tensor:
    """A guided prediction through the MODEL's ``predict_noise`` wrappers (class_obj: the run's guider)."""
    wrappers = registered(step.model, step.model_options.get("transformer_options"), "predict_noise")
    if not wrappers:
        return proceed()
    guider = _RUN_GUIDER.get()
    if guider is None:
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


def run_calc_cond_batch(batch: CondBatch, proceed: Callable[..., list[torch.Tensor]]) -> list[torch.Tensor]:
    """The x0 predictions of a step's cond lists through the MODEL's ``calc_cond_batch`` wrappers."""
    wrappers = registered(batch.model, batch.model_options.get("transformer_options"), "calc_cond_batch")
    if not wrappers:
        return proceed()
    view = batch.model.model

    def original(model: Any, conds: list[Any], x_in: torch.Tensor, timestep: torch.Tensor,
                 model_options: dict[str, Any]) -> list[torch.Tensor]:
        handle = batch.model if model is view else model
        return proceed(replace(batch, model=handle, sides=from_dicts(conds), x=x_in, sigma=timestep,
                               model_options=model_options))

    out: list[torch.Tensor] = _executor(original, None, wrappers).execute(view, to_dicts(batch.sides), batch.x,
                                                                          batch.sigma, batch.model_options)
    return out


def run_apply_model(call: ModelCall, proceed: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A model call through the MODEL's ``apply_model`` wrappers (class_obj: its ``comfy.model_base`` view)."""
    options = call.transformer_options
    wrappers = registered(call.model, options if options is not None else _model_transformer_options(call.model),
                          "apply_model")
    if not wrappers:
        return proceed()
    given = options if options is not None else {}
    kwargs = {} if call.y is None else {"y": call.y}

    def original(x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                 c_crossattn: torch.Tensor | None = None, control: Any = None,
                 transformer_options: dict[str, Any] | None = None, **extra: Any) -> torch.Tensor:
        passed = options if transformer_options is given else (transformer_options or None)
        return proceed(replace(call, x=x, sigma=t, concat=c_concat, context=c_crossattn, control=control,
                               y=extra.get("y"), transformer_options=passed))

    out: torch.Tensor = _executor(original, call.model.model, wrappers).execute(
        call.x, call.sigma, call.concat, call.context, call.control, given, **kwargs)
    return out


def run_diffusion_model(call: NetworkCall, proceed: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A network call through the MODEL's ``diffusion_model`` wrappers (class_obj: the network)."""
    options = call.kwargs.get("transformer_options")
    wrappers = registered(call.model, options if options is not None else _model_transformer_options(call.model),
                          "diffusion_model")
    if not wrappers:
        return proceed()

    def original(*args: Any, **kwargs: Any) -> torch.Tensor:
        return proceed(replace(call, args=args, kwargs=kwargs))

    out: torch.Tensor = _executor(original, call.module, wrappers).execute(*call.args, **call.kwargs)
    return out
