"""Classifier-free guidance over resolved conds (Ho & Salimans 2022), batched like ComfyUI.

Every active entry of the positive and negative lists is evaluated on its area of x; entries with the
same input shape run in one model call (negative first, as ComfyUI orders them); predictions of one side
are averaged with their area / mask / strength weights, then ``uncond + (cond - uncond) * cfg``. At
cfg == 1 the negative side is not evaluated. Entries carrying hooks (``Cond.hooks``) batch only with entries of
the same hook group and run on that group's hooked model clone (``engine.sampling.hook_run``); ``default``
entries fill the weight their side's other entries leave uncovered.

The model handle's ``model_options`` hooks run where ComfyUI runs them (``comfy/samplers.py``); a sampler run hands
them a copy whose ``transformer_options["sample_sigmas"]`` is the run's schedule (``engine.sampling.ksampler``):

- ``sampler_pre_cfg_function``: list of ``fn(args) -> [cond_pred, uncond_pred]``; args ``conds``,
  ``conds_out``, ``cond_scale``, ``timestep``, ``input``, ``sigma``, ``model``, ``model_options``.
- ``sampler_cfg_function``: ``fn(args) -> x - guided_x0`` (noise-like: the input minus the guided x0);
  args ``cond`` / ``uncond`` (``x - cond_x0`` / ``x - uncond_x0``), ``cond_scale``, ``timestep``, ``input``,
  ``sigma``, ``cond_denoised``, ``uncond_denoised``, ``model``, ``model_options``. Replaces plain CFG.
- ``sampler_post_cfg_function``: list of ``fn(args) -> x0``; args ``denoised``, ``cond``, ``uncond``
  (the resolved cond lists), ``cond_scale``, ``model``, ``uncond_denoised``, ``cond_denoised``, ``sigma``,
  ``model_options``, ``input``.
- ``sampler_calc_cond_batch_function``: ``fn(args) -> [cond_pred, uncond_pred]`` replacing the batched model
  calls; args ``conds`` ([positive, negative or None]), ``input``, ``sigma``, ``model``, ``model_options``.
- ``denoise_mask_function``: ``fn(sigma, denoise_mask, extra_options={"model", "sigmas"}) -> mask``,
  applied by ``InpaintDenoiser`` before each evaluation (DifferentialDiffusion).
- ``disable_cfg1_optimization``: evaluate the negative side even at cfg == 1.
- ``model_function_wrapper``: ``fn(apply_model, args) -> x0`` called instead of each batched model call; args
  ``input``, ``timestep`` (sigma), ``c`` (the call's keyword arguments) and ``cond_or_uncond`` (``_wrapped_call``).

With no hooks set the arithmetic is exactly the plain path's, so sampling parity is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine.gligen import gligen_middle_patch
from engine.model_call import NETWORK_INPUTS
from engine.sampling.conditioning import Cond, repeat_to_batch_size
from engine.sampling.reference_latents import reference_inputs, same_references
from engine.sampling.run_wrappers import CondBatch, GuidanceStep, batched_calls, guided_step

_FEATHER = 8  # area edges off the image border fade in over min(8, area size // 4) latent pixels


@dataclass
class _Job:
    x: torch.Tensor
    mult: torch.Tensor
    cond: Cond
    side: int  # 0 = positive, 1 = negative


def _crop(t: torch.Tensor, area: tuple[int, ...], first_dim: int) -> torch.Tensor:
    n = len(area) // 2
    for i in range(n):
        t = t.narrow(i + first_dim, area[n + i], area[i])
    return t


def _prepare(c: Cond, x: torch.Tensor, sigma: torch.Tensor, side: int) -> _Job | None:
    s = float(sigma[0])
    if c.sigma_start is not None and s > c.sigma_start:
        return None
    if c.sigma_end is not None and s < c.sigma_end:
        return None
    dims = tuple(x.shape[2:])
    area: tuple[int, ...] | None = None
    x_in = x
    if c.area is not None:
        a = list(c.area)
        n = len(dims)
        for i in range(n):
            a[i] = min(x.shape[i + 2] - a[n + i], a[i])
        area = tuple(a)
        x_in = _crop(x, area, 2)
    if c.mask is not None:
        m = c.mask[: x_in.shape[0]]
        if area is not None:
            m = _crop(m, area, 1)
        m = m * c.mask_strength
        mask = m.unsqueeze(1).repeat(x_in.shape[0] // m.shape[0], x_in.shape[1], 1, 1)
    else:
        mask = torch.ones_like(x_in)
    mult = mask * c.strength
    if c.mask is None and area is not None:
        n = len(dims)
        for i in range(n):
            rr = min(_FEATHER, mult.shape[2 + i] // 4)
            if area[n + i] != 0:
                for t in range(rr):
                    mult.narrow(i + 2, t, 1).mul_((1.0 / rr) * (t + 1))
            if area[i] + area[n + i] < x.shape[i + 2]:
                for t in range(rr):
                    mult.narrow(i + 2, area[i] - 1 - t, 1).mul_((1.0 / rr) * (t + 1))
    job_cond = c if area == c.area else Cond(**{**c.__dict__, "area": area})
    return _Job(x_in, mult, job_cond, side)


def _ctx_compatible(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        return False
    lcm = math.lcm(a.shape[1], b.shape[1])
    return lcm // min(a.shape[1], b.shape[1]) <= 4


def _batchable(a: _Job, b: _Job) -> bool:
    if a.x.shape != b.x.shape or not _ctx_compatible(a.cond.cross_attn, b.cond.cross_attn):
        return False
    if a.cond.control is not b.cond.control:  # one control call per model call (ComfyUI's can_concat_cond)
        return False
    if a.cond.extra.get("gligen") is not None or b.cond.extra.get("gligen") is not None:
        return a is b  # a GLIGEN entry gets its own patch per call, so it never shares a call (as in ComfyUI)
    if a.cond.hooks is not b.cond.hooks:  # each hook group runs with its own weights
        return False
    if not same_references(a.cond, b.cond):  # reference latents join only at equal shapes (ComfyUI's CONDList)
        return False
    for ta, tb in ((a.cond.y, b.cond.y), (a.cond.concat, b.cond.concat)):
        if (ta is None) != (tb is None) or (ta is not None and tb is not None and ta.shape != tb.shape):
            return False
    return True


def _cat_context(tensors: list[torch.Tensor]) -> torch.Tensor:
    lengths = [t.shape[1] for t in tensors]
    lcm = math.lcm(*lengths)
    return torch.cat([t.repeat(1, lcm // t.shape[1], 1) if t.shape[1] != lcm else t for t in tensors])


def _model_inputs(job: _Job, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    ctx = repeat_to_batch_size(job.cond.cross_attn, batch)
    y = repeat_to_batch_size(job.cond.y, batch) if job.cond.y is not None else None
    concat = job.cond.concat
    if concat is not None:
        if job.cond.area is not None:
            concat = _crop(concat, job.cond.area, 2)
        concat = repeat_to_batch_size(concat, batch)
    return ctx, y, concat


def _default_jobs(defaults: list[list[Cond]], jobs: list[_Job], x: torch.Tensor, sigma: torch.Tensor) -> list[_Job]:
    """Jobs for a side's ``default`` entries, weighted by what its other active entries leave uncovered
    (1 - their summed weights, clamped at 0); none where nothing is left (ComfyUI's finalize_default_conds)."""
    out: list[_Job] = []
    for side, conds in enumerate(defaults):
        if not conds:
            continue
        remaining = torch.ones_like(x)
        for j in jobs:
            if j.side == side:
                target = remaining if j.cond.area is None else _crop(remaining, j.cond.area, 2)
                target -= j.mult
        remaining.clamp_(min=0.0)
        if float(remaining.max()) == 0.0:
            continue
        for c in conds:
            job = _prepare(c, x, sigma, side)
            if job is not None:
                job.mult = remaining
                out.append(job)
    return out


def calc_cond_batch(model: Any, sides: list[list[Cond] | None], x: torch.Tensor, sigma: torch.Tensor,
                    model_options: ModelOptions | None = None) -> list[torch.Tensor]:
    """Weighted x0 prediction of each side (a list of conds, or None to skip) at ``x``, ``sigma``;
    ``model_options`` (default: the handle's own) supplies the UNet's ``transformer_options``, as in ComfyUI,
    so a hook can run one extra call with a patch of its own (PerturbedAttentionGuidance). Installed batch wrappers
    (``engine.sampling.run_wrappers``) run around it."""
    return batched_calls(CondBatch(model, sides, x, sigma, model_options),
                         lambda b: _calc_cond_batch(b.model, b.sides, b.x, b.sigma, b.model_options))


def _calc_cond_batch(model: Any, sides: list[list[Cond] | None], x: torch.Tensor, sigma: torch.Tensor,
                     model_options: ModelOptions | None) -> list[torch.Tensor]:
    out = [torch.zeros_like(x) for _ in sides]
    counts = [torch.ones_like(x) * 1e-37 for _ in sides]
    pending: list[_Job] = []
    defaults: list[list[Cond]] = [[] for _ in sides]
    for side, conds in enumerate(sides):
        for c in conds or []:
            if "default" in c.extra:
                defaults[side].append(c)
                continue
            job = _prepare(c, x, sigma, side)
            if job is not None:
                pending.append(job)
    if any(defaults):
        pending += _default_jobs(defaults, pending, x, sigma)
    while pending:
        first = pending[0]
        picks = [i for i, j in enumerate(pending) if _batchable(j, first)]
        picks.reverse()
        jobs = [pending.pop(i) for i in picks]
        batch = x.shape[0]
        inputs = [_model_inputs(j, batch) for j in jobs]
        ys = [i[1] for i in inputs]
        concats = [i[2] for i in inputs]
        x_in, sigma_in = torch.cat([j.x for j in jobs]), torch.cat([sigma] * len(jobs))
        context = _cat_context([i[0] for i in inputs])
        y = torch.cat([y for y in ys if y is not None]) if ys[0] is not None else None
        extra: dict[str, Any] = {}
        refs = reference_inputs([j.cond for j in jobs], batch)
        if refs:
            extra["extra_inputs"] = refs
        options = model_options if model_options is not None else model_options_of(model)
        patch_options = options.get("transformer_options")
        if jobs[0].cond.control is not None:
            call = {**(patch_options or {}), "cond_or_uncond": [j.side for j in jobs], "sigmas": sigma_in}
            extra["control"] = jobs[0].cond.control.run(x_in, sigma_in, context, y, len(jobs), call)
        gligen = jobs[0].cond.extra.get("gligen")
        if patch_options or gligen is not None:  # ComfyUI's per-call options for UNet patches: sides and sigmas
            call_options = {**(patch_options or {}), "cond_or_uncond": [j.side for j in jobs], "sigmas": sigma_in}
            if gligen is not None:  # the entry's own patch after the model's (ComfyUI merges them so)
                patches = dict(call_options.get("patches") or {})
                patches["middle_patch"] = [*patches.get("middle_patch", ()),
                                           gligen_middle_patch(gligen, x_in.shape, x_in.device)]
                call_options["patches"] = patches
            extra["transformer_options"] = call_options
        runner = model if jobs[0].cond.hooks is None else jobs[0].cond.hooks.model_for(model, float(sigma[0]))
        concat = torch.cat([c for c in concats if c is not None]) if concats[0] is not None else None
        wrapper = options.get("model_function_wrapper")
        if wrapper is not None:
            out_all = _wrapped_call(runner, wrapper, x_in, sigma_in, context, y, concat, extra, [j.side for j in jobs])
        else:
            out_all = runner.apply_model(x_in, sigma_in, context, y=y, concat=concat, **extra)
        pred: tuple[torch.Tensor, ...] = out_all.chunk(len(jobs))
        for j, p in zip(jobs, pred, strict=True):
            if j.cond.area is None:
                out[j.side] += p * j.mult
                counts[j.side] += j.mult
            else:
                _crop(out[j.side], j.cond.area, 2).add_(p * j.mult)
                _crop(counts[j.side], j.cond.area, 2).add_(j.mult)
    for o, n in zip(out, counts, strict=True):
        o /= n
    return out


def _wrapped_call(model: Any, wrapper: Callable[..., torch.Tensor], x: torch.Tensor, sigma: torch.Tensor,
                  context: torch.Tensor, y: torch.Tensor | None, concat: torch.Tensor | None, extra: dict[str, Any],
                  sides: list[int]) -> torch.Tensor:
    """ComfyUI's ``model_function_wrapper`` (``set_model_unet_function_wrapper``): ``wrapper(apply_model, args)``
    with args ``input``, ``timestep`` (sigma), ``c`` (``c_crossattn``, ``y``, ``c_concat``, ``control``,
    ``transformer_options``: the keyword arguments of ``apply_model``) and ``cond_or_uncond``; returns x0."""
    c: dict[str, Any] = {"c_crossattn": context, "transformer_options": extra.get("transformer_options", {})}
    for key, value in (("y", y), ("c_concat", concat), ("control", extra.get("control"))):
        if value is not None:
            c[key] = value
    c.update(extra.get("extra_inputs") or {})

    def apply_model(x_: torch.Tensor, t_: torch.Tensor, c_crossattn: torch.Tensor | None = None,
                    c_concat: torch.Tensor | None = None, y: torch.Tensor | None = None, control: Any = None,
                    transformer_options: dict[str, Any] | None = None, **rest: Any) -> torch.Tensor:
        inputs = {k: v for k, v in rest.items() if k in NETWORK_INPUTS}
        out: torch.Tensor = model.apply_model(x_, t_, c_crossattn, y=y, concat=c_concat, control=control,
                                              transformer_options=transformer_options or None,
                                              extra_inputs=inputs or None)
        return out

    return wrapper(apply_model, {"input": x, "timestep": sigma, "c": c, "cond_or_uncond": sides})


ModelOptions = dict[str, Any]
_HOOK_KEYS = ("sampler_pre_cfg_function", "sampler_cfg_function", "sampler_post_cfg_function",
              "sampler_calc_cond_batch_function")


def model_options_of(model: Any) -> ModelOptions:
    """The handle's ``model_options`` dict (empty for handles without one)."""
    opts = getattr(model, "model_options", None)
    return opts if isinstance(opts, dict) else {}


def has_cfg_hooks(model_options: ModelOptions) -> bool:
    """True when a pre-, post- or replacement CFG function (or a calc_cond_batch replacement) is set."""
    return any(model_options.get(k) for k in _HOOK_KEYS)


def cfg_function(model: Any, cond_pred: torch.Tensor, uncond_pred: torch.Tensor, cond_scale: float,
                 x: torch.Tensor, sigma: torch.Tensor, model_options: ModelOptions,
                 cond: list[Cond] | None = None, uncond: list[Cond] | None = None) -> torch.Tensor:
    """Guided x0: ``sampler_cfg_function`` (or plain CFG), then each ``sampler_post_cfg_function``."""
    replace = model_options.get("sampler_cfg_function")
    if replace is not None:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": sigma,
                "input": x, "sigma": sigma, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred,
                "model": model, "model_options": model_options}
        result: torch.Tensor = x - replace(args)
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for post in model_options.get("sampler_post_cfg_function", ()):
        result = post({"denoised": result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale,
                       "model": model, "uncond_denoised": uncond_pred, "cond_denoised": cond_pred,
                       "sigma": sigma, "model_options": model_options, "input": x})
    return result


class CFGDenoiser:
    """``denoiser(x, sigma) -> x0`` with classifier-free guidance over positive / negative conds.

    ``model_options`` defaults to the handle's own (``model.model_options``); its CFG hooks are applied as
    described in the module docstring. ``inner_model`` names the handle as ComfyUI's guider does, for
    ``denoise_mask_function`` hooks that read ``extra_options["model"].inner_model.model_sampling``.
    """

    def __init__(self, model: Any, positive: list[Cond], negative: list[Cond], cfg: float,
                 model_options: ModelOptions | None = None, seed: int | None = None) -> None:
        self.model = model
        self.inner_model = model
        self.model_patcher = model
        self.positive = positive
        self.negative = negative
        self.cfg = float(cfg)
        self.model_options = model_options if model_options is not None else model_options_of(model)
        self.seed = seed

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The guided x0, through the installed step wrappers (engine.sampling.run_wrappers)."""
        step = GuidanceStep(self.model, x, sigma, self.positive, self.negative, self.cfg, self.model_options,
                            self.seed)
        return guided_step(step, lambda s: self.guide(x, sigma) if s is step else self._guide_other(s))

    def _guide_other(self, step: GuidanceStep) -> torch.Tensor:
        """Loom's CFG for a step a wrapper changed (other x, sigma, options, ...)."""
        other = CFGDenoiser(step.model, step.positive, step.negative, step.cfg, step.model_options, step.seed)
        return other.guide(step.x, step.sigma)

    def guide(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Loom's CFG at ``x``, ``sigma``: the batched predictions, then the model options' CFG hooks."""
        opts = self.model_options
        skip_uncond = math.isclose(self.cfg, 1.0) and not opts.get("disable_cfg1_optimization", False)
        uncond = None if skip_uncond else self.negative
        if not has_cfg_hooks(opts):
            cond_pred, uncond_pred = calc_cond_batch(self.model, [self.positive, uncond], x, sigma, opts)
            if uncond is None:
                return cond_pred
            return uncond_pred + (cond_pred - uncond_pred) * self.cfg
        conds: list[list[Cond] | None] = [self.positive, uncond]
        batch_fn = opts.get("sampler_calc_cond_batch_function")
        if batch_fn is not None:
            out = batch_fn({"conds": conds, "input": x, "sigma": sigma, "model": self.model, "model_options": opts})
        else:
            out = calc_cond_batch(self.model, conds, x, sigma, opts)
        for pre in opts.get("sampler_pre_cfg_function", ()):
            out = pre({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": sigma, "input": x,
                       "sigma": sigma, "model": self.model, "model_options": opts})
        return cfg_function(self.model, out[0], out[1], self.cfg, x, sigma, opts, cond=self.positive, uncond=uncond)


def rescale_cfg(args: dict[str, Any], multiplier: float) -> torch.Tensor:
    """RescaleCFG's ``sampler_cfg_function`` (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample
    Steps are Flawed", eq. 15-16), computed as ComfyUI does: in v-prediction space, the CFG result's
    per-sample std is rescaled to the positive prediction's, then mixed by ``multiplier``.
    Returns ``input - x0`` like every ``sampler_cfg_function``."""
    x_orig: torch.Tensor = args["input"]
    sigma: torch.Tensor = args["sigma"]
    sigma = sigma.view(sigma.shape[:1] + (1,) * (x_orig.ndim - 1))
    scale = args["cond_scale"]
    x = x_orig / (sigma * sigma + 1.0)
    root = (sigma**2 + 1.0) ** 0.5
    v_cond = ((x - (x_orig - args["cond"])) * root) / sigma
    v_uncond = ((x - (x_orig - args["uncond"])) * root) / sigma
    v_cfg = v_uncond + scale * (v_cond - v_uncond)
    dims = tuple(range(1, v_cfg.ndim))
    std_pos = torch.std(v_cond, dim=dims, keepdim=True)
    std_cfg = torch.std(v_cfg, dim=dims, keepdim=True)
    v_final = multiplier * (v_cfg * (std_pos / std_cfg)) + (1.0 - multiplier) * v_cfg
    out: torch.Tensor = x_orig - (x - v_final * sigma / (sigma * sigma + 1.0) ** 0.5)
    return out


def differential_diffusion_mask(sigma: torch.Tensor, denoise_mask: torch.Tensor, extra_options: dict[str, Any],
                                strength: float = 1.0) -> torch.Tensor:
    """DifferentialDiffusion's ``denoise_mask_function`` (Levin & Fried 2023, "Differential Diffusion").

    The threshold falls linearly in timestep from 1 at the first sigma of the schedule to 0 at its last
    (or the model's smallest) sigma; a cell is regenerated once its mask value reaches the threshold, so
    soft mask values mean "change this much". ``strength`` < 1 blends that binary mask with the soft one.
    """
    holder = extra_options["model"]
    ms = getattr(holder, "inner_model", holder).model_sampling
    sigmas: torch.Tensor = extra_options["sigmas"]
    sigma_to = ms.sigma_min
    if sigmas[-1] > sigma_to:
        sigma_to = sigmas[-1]
    ts_from = ms.timestep(sigmas[0])
    ts_to = ms.timestep(sigma_to)
    threshold = (ms.timestep(sigma[0]) - ts_to) / (ts_from - ts_to)
    binary: torch.Tensor = (denoise_mask >= threshold).to(denoise_mask.dtype)
    if strength and strength < 1:
        blended: torch.Tensor = strength * binary + (1 - strength) * denoise_mask
        return blended
    return binary


class InpaintDenoiser:
    """Noise-mask inpainting around a denoiser (ComfyUI's KSamplerX0Inpaint, parity rule 6).

    Before each call the kept region (mask 0) is replaced by the original latent re-noised to the current
    sigma with ``noise``; after it the kept region of x0 is the original latent. A
    ``denoise_mask_function`` in ``model_options`` (default: the inner denoiser's) first maps the mask per
    sigma; it is given ``extra_options={"model": inner, "sigmas": sigmas}`` (the schedule being sampled).
    """

    def __init__(self, inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], model_sampling: Any,
                 latent: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None, *,
                 sigmas: torch.Tensor | None = None, model_options: ModelOptions | None = None) -> None:
        self.inner = inner
        self.model_sampling = model_sampling
        self.latent = latent
        self.noise = noise
        self.mask = mask
        self.sigmas = sigmas
        self.model_options = model_options if model_options is not None else model_options_of(inner)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return self.inner(x, sigma)
        mask = self.mask
        mask_fn = self.model_options.get("denoise_mask_function")
        if mask_fn is not None:
            if self.sigmas is None:
                raise ValueError("InpaintDenoiser: a denoise_mask_function is set; pass sigmas= (the schedule)")
            mask = mask_fn(sigma, mask, extra_options={"model": self.inner, "sigmas": self.sigmas})
        keep = 1.0 - mask
        column = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
        renoised: torch.Tensor = self.model_sampling.noise_scaling(column, self.noise, self.latent)
        x = x * mask + renoised * keep
        out = self.inner(x, sigma)
        return out * mask + self.latent * keep
