"""``sample()``: ComfyUI's KSampler / KSamplerAdvanced over a ModelHandle (comfyui-api.md section 9).

Sigma windows (denoise, start/end steps), latent scaling in and out, the starting noise level, noise-mask
inpainting, 9-channel inpaint-model and 8-channel InstructPix2Pix concat inputs, CFG, and the sampler's own noise source.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from engine.adapters.control import AnyControlRun, bind_controls
from engine.gligen import share_gligen
from engine.handles import ModelHandle
from engine.ip2p import ip2p_concat, is_instruct_pix2pix
from engine.reports import report
from engine.sampling.conditioning import Cond, add_matching_areas, repeat_to_batch_size, resolve_conds
from engine.sampling.guider import CFGDenoiser, InpaintDenoiser
from engine.sampling.hook_run import bind_hooks
from engine.sampling.reference_latents import bind_reference_latents
from engine.sampling.run_wrappers import OuterRun, SamplerRun, outer_sample, run_sampler
from engine.sampling.samplers import SamplerSpec, get_sampler, make_noise_sampler
from engine.sampling.schedulers import calculate_sigmas
from engine.types import Conditioning, CondOptions, ProgressCallback

# SD1.x latents of a mid-grey (pixel value 0) image: the "no image" input of inpaint UNets.
_BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)


def ksampler_sigmas(model_sampling: Any, scheduler: str, steps: int, denoise: float | None, spec: SamplerSpec) -> torch.Tensor:
    """The schedule KSampler uses: denoise < 1 keeps the tail of a longer schedule (spec 9.4)."""

    def full(n: int) -> torch.Tensor:
        if spec.discard_penultimate_sigma:
            s = calculate_sigmas(model_sampling, scheduler, n + 1)
            return torch.cat([s[:-2], s[-1:]])
        return calculate_sigmas(model_sampling, scheduler, n)

    if denoise is None or denoise > 0.9999:
        return full(steps)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    return full(int(steps / denoise))[-(steps + 1):]


def step_window(sigmas: torch.Tensor, start_step: int | None, last_step: int | None, force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced's start/end window; None means "nothing to do, return the input latent"."""
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return None
    return sigmas


def prepare_mask(mask: torch.Tensor, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Noise mask -> latent shape: bilinear resize, repeat over channels and batch (soft values kept)."""
    m = mask.to(torch.float32).reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    m = F.interpolate(m, size=tuple(shape[2:]), mode="bilinear")
    if m.shape[1] < shape[1]:
        m = m.repeat((1, shape[1], 1, 1))[:, : shape[1]]
    return repeat_to_batch_size(m, shape[0]).to(device)


def fix_empty_latent_channels(model: ModelHandle, latent: torch.Tensor) -> torch.Tensor:
    """An all-zero latent whose channel count differs from the model's latent format is repeated / cut to it.

    The one place that decides it: ``sample()`` applies it, and KSampler applies it before drawing the seed's
    noise so the noise has the model's channel count.
    """
    channels = model.latent_format.latent_channels
    if latent.shape[1] != channels and not torch.any(latent):
        latent = latent.repeat(1, math.ceil(channels / latent.shape[1]), 1, 1)[:, :channels]
    return latent


def _inpaint_concat(model: ModelHandle, opts: CondOptions, noise: torch.Tensor, latent_in: torch.Tensor, denoise_mask: torch.Tensor | None) -> torch.Tensor:
    """[mask, masked-image latent] extra UNet channels of an inpainting checkpoint (ComfyUI concat_cond)."""
    fmt = model.latent_format
    image = opts.get("concat_latent_image")
    if image is None:
        image = latent_in
    else:
        image = fmt.process_in(image.to(noise.device, torch.float32))
    if image.shape[1:] != noise.shape[1:]:
        image = F.interpolate(image, size=tuple(noise.shape[-2:]), mode="bilinear")
    image = repeat_to_batch_size(image, noise.shape[0])
    mask = opts.get("concat_mask", denoise_mask)
    if mask is None:
        blank = torch.ones_like(noise)
        for ch, v in enumerate(_BLANK_INPAINT_LATENT[: noise.shape[1]]):
            blank[:, ch] *= v
        return torch.cat([torch.ones_like(noise)[:, :1], blank], dim=1)
    mask = mask.to(noise.device, torch.float32)
    if mask.ndim == noise.ndim:
        mask = mask[:, :1]
    mask = mask.reshape((-1, 1) + tuple(mask.shape[-2:]))
    if mask.shape[-2:] != noise.shape[-2:]:
        mask = F.interpolate(mask, size=tuple(noise.shape[-2:]), mode="bilinear")
    mask = repeat_to_batch_size(mask.round(), noise.shape[0])
    return torch.cat([mask, image], dim=1)


def _add_adm(model: ModelHandle, conds: list[Cond], shape: torch.Size, prompt_type: str,
             seed: int | None = None) -> None:
    """Give entries without ``y`` the model's ADM vector (SDXL size / aesthetic conditioning; no-op for SD1/SD2),
    and entries with reference latents those in model space (``engine.sampling.reference_latents``).

    The one place these model inputs are added (KSampler, SamplerCustom and comfy.sample all come through here).
    """
    for c in conds:
        if c.y is None:
            y = model.adm(c.extra, tuple(shape), prompt_type, seed=seed)
            if y is not None:
                c.y = y.to(device=c.cross_attn.device, dtype=torch.float32)
    bind_reference_latents(model, conds, prompt_type)


def _needs_concat(model: ModelHandle, latent_channels: int) -> bool:
    return model.in_channels > latent_channels


def sample(
    model: ModelHandle,
    noise: torch.Tensor,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Conditioning,
    negative: Conditioning,
    latent_image: torch.Tensor,
    denoise: float = 1.0,
    disable_noise: bool = False,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
    noise_mask: torch.Tensor | None = None,
    callback: ProgressCallback | None = None,
    seed: int | None = None,
    *,
    sigmas: torch.Tensor | None = None,
    sampler: SamplerSpec | None = None,
) -> torch.Tensor:
    """Run KSampler; returns the new raw (unscaled) latent, float32 on the CPU.

    ``sigmas`` and ``sampler`` (SamplerCustom) are used as given instead of the schedule that ``scheduler``,
    ``steps``, ``denoise`` and the step window would build and the sampler that ``sampler_name`` names.
    """
    if steps < 1 and sigmas is None:
        raise ValueError(f"sample(): steps must be >= 1, got {steps}")
    spec = sampler if sampler is not None else get_sampler(sampler_name)
    ms = model.model_sampling
    latent = fix_empty_latent_channels(model, latent_image)
    if disable_noise:
        noise = torch.zeros_like(latent)
    if noise.shape != latent.shape:
        raise ValueError(f"sample(): noise shape {tuple(noise.shape)} does not match latent {tuple(latent.shape)}")

    if sigmas is None:
        sigmas = step_window(ksampler_sigmas(ms, scheduler, steps, denoise, spec), start_step, last_step,
                             force_full_denoise)
    if sigmas is None or sigmas.shape[-1] == 0:
        return latent_image
    outer = OuterRun(model, noise, latent, spec, sampler_name if sampler is None else None, sigmas, noise_mask,
                     callback, seed, positive, negative, cfg)
    return outer_sample(outer, _sample_outer)


def _sample_outer(run: OuterRun) -> torch.Tensor:
    """Everything after the schedule (ComfyUI's guider ``outer_sample``): conds, noise scaling, the sampler run
    and the latent back out of model space."""
    model, latent, noise_mask, seed = run.model, run.latent, run.noise_mask, run.seed
    ms, fmt, device = model.model_sampling, model.latent_format, model.load_device
    latent_in = latent.to(device, torch.float32)
    if torch.count_nonzero(latent_in) > 0:
        latent_in = fmt.process_in(latent_in)
    noise = run.noise.to(device, torch.float32)
    sigmas = run.sigmas.to(device)
    mask = prepare_mask(noise_mask, noise.shape, device) if noise_mask is not None else None

    pos = resolve_conds(run.positive, noise.shape, ms, device, "positive")
    neg = resolve_conds(run.negative, noise.shape, ms, device, "negative")
    _add_adm(model, pos, noise.shape, "positive", seed)
    _add_adm(model, neg, noise.shape, "negative", seed)
    control_runs = bind_controls(pos, neg, model, sigmas)
    try:
        return _sample_bound(run, pos, neg, control_runs, latent_in, noise, sigmas, mask)
    finally:
        for control in control_runs:
            control.release()


def _sample_bound(run: OuterRun, pos: list[Cond], neg: list[Cond], control_runs: list[AnyControlRun],
                  latent_in: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """The rest of ``_sample_outer`` once the controls are bound (they are released by the caller)."""
    model, spec, seed, callback, cfg = run.model, run.sampler, run.seed, run.callback, run.cfg
    ms, fmt, device = model.model_sampling, model.latent_format, model.load_device
    bind_hooks([pos, neg], ms, sigmas)
    if _needs_concat(model, noise.shape[1]):
        ip2p = is_instruct_pix2pix(model.in_channels, noise.shape[1])
        for c in pos + neg:
            c.concat = (ip2p_concat(c.extra, noise) if ip2p
                        else _inpaint_concat(model, c.extra, noise, latent_in, mask))
    add_matching_areas(neg, pos)
    add_matching_areas(pos, neg)
    share_gligen(pos, neg)

    # the run's options, as ComfyUI's guider hands them to each prediction: the model's, with the schedule that CFG
    # hooks and patches read (transformer_options["sample_sigmas"])
    options = {**model.model_options,
               "transformer_options": {**(model.model_options.get("transformer_options") or {}), "sample_sigmas": sigmas}}
    cfg_denoiser = CFGDenoiser(model, pos, neg, cfg, options, seed=seed)

    def loop(r: SamplerRun) -> torch.Tensor:
        """The sampler over the run's schedule, from its noise scaled to the first sigma, back through the inverse
        scaling at the last (KSAMPLER.sample's part)."""
        run_sigmas, run_noise, run_mask = r.sigmas, r.noise, r.denoise_mask
        first, max_sigma = float(run_sigmas[0]), float(ms.sigma_max)
        max_denoise = math.isclose(max_sigma, first, rel_tol=1e-05) or first > max_sigma
        x = ms.noise_scaling(run_sigmas[0], run_noise, r.latent, max_denoise)
        blend_noise = run_noise
        if spec.random_inpaint_noise and run_mask is not None:
            gen = torch.Generator(device="cpu").manual_seed(((41 if r.seed is None else int(r.seed)) + 1) % 2**64)
            blend_noise = torch.randn(run_noise.shape, generator=gen, device="cpu").to(run_noise.dtype).to(device)
        denoiser = InpaintDenoiser(cfg_denoiser, ms, r.latent, blend_noise, run_mask, sigmas=run_sigmas)
        total = len(run_sigmas) - 1
        step_cb = None
        if r.callback is not None:
            run_callback = r.callback

            def step_cb(i: int, denoised: torch.Tensor, x_now: torch.Tensor) -> None:
                run_callback(i, denoised, x_now, total)
        noise_sampler = make_noise_sampler(spec, x, run_sigmas, r.seed)
        # the UNet and its controls are loaded (or kept) together: a control loaded per call never evicts the UNet
        together = (model.manager.running_together([model.entry, *(e for c in control_runs for e in c.entries)])
                    if control_runs else contextlib.nullcontext())
        with torch.no_grad(), together:
            out: torch.Tensor = spec.fn(denoiser, x, run_sigmas, noise_sampler=noise_sampler, callback=step_cb)
        return ms.inverse_noise_scaling(run_sigmas[-1], out)  # type: ignore[no-any-return]

    sampler_run = SamplerRun(model, spec, run.sampler_name, sigmas, noise, latent_in, mask, seed, callback)
    out = run_sampler(sampler_run, loop)
    schedule = [float(s) for s in sigmas]
    for control in control_runs:
        record = control.record(schedule)
        if record is not None:
            report("adapters", record)
    return fmt.process_out(out.to(torch.float32)).cpu()


__all__ = ["Cond", "fix_empty_latent_channels", "ksampler_sigmas", "prepare_mask", "sample", "step_window"]
