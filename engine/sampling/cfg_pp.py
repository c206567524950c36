"""CFG++ samplers (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
Models", arXiv:2406.08070): the guided x0 sets where a step lands, the *unconditional* x0 sets the noise
direction it renoises with.

The samplers need the negative side's x0 of every call. As in ComfyUI, they get it from a
``sampler_post_cfg_function`` that records ``uncond_denoised`` (``track_uncond``), run on a copy of the
denoiser chain with the cfg == 1 shortcut disabled, so the negative is evaluated at every scale. The
model handle's own ``model_options`` are never changed.

Signature as in ``k_samplers``: ``(model, x, sigmas, noise_sampler=None, callback=None, **knobs)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from engine.sampling.k_samplers import (
    Denoiser,
    StepCallback,
    ancestral_step,
    batch_ones,
    denoise_and_report,
    require_noise,
    to_d,
)
from engine.sampling.noise import NoiseSampler

PostCfg = Callable[[dict[str, Any]], torch.Tensor]


def with_post_cfg(model: Denoiser, post: PostCfg) -> Denoiser:
    """A copy of a denoiser chain whose CFG stage also runs ``post`` (last) with cfg1 shortcuts off.

    Wrappers (objects with an ``inner`` denoiser, such as ``InpaintDenoiser``) are copied around a patched
    inner; the CFG stage is the first object with a ``model_options`` dict and no ``inner`` (``CFGDenoiser``
    and the custom guiders). Its options dict is replaced, never mutated.
    """
    inner = getattr(model, "inner", None)
    if inner is not None:
        clone = copy.copy(model)
        clone.inner = with_post_cfg(inner, post)  # type: ignore[attr-defined]
        return clone
    opts = getattr(model, "model_options", None)
    if not isinstance(opts, dict):
        raise TypeError(
            f"a CFG++ sampler needs the unconditional prediction, but the denoiser {type(model).__name__} has no "
            "model_options to hook (use it through KSampler / SamplerCustom, or a CFGDenoiser)"
        )
    new_opts = dict(opts)
    new_opts["sampler_post_cfg_function"] = [*opts.get("sampler_post_cfg_function", ()), post]
    new_opts["disable_cfg1_optimization"] = True
    clone = copy.copy(model)
    clone.model_options = new_opts  # type: ignore[attr-defined]
    return clone


def track_uncond(model: Denoiser) -> tuple[Denoiser, Callable[[], torch.Tensor]]:
    """``(denoiser, last_uncond)``: ``last_uncond()`` is the negative x0 of the denoiser's latest call."""
    seen: list[torch.Tensor] = []

    def record(args: dict[str, Any]) -> torch.Tensor:
        seen[:] = [args["uncond_denoised"]]
        denoised: torch.Tensor = args["denoised"]
        return denoised

    def last_uncond() -> torch.Tensor:
        if not seen:
            raise RuntimeError("the denoiser ran no CFG stage, so there is no unconditional prediction")
        return seen[0]

    return with_post_cfg(model, record), last_uncond


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler ancestral with CFG++ (Chung et al. 2024, Algorithm 2 in DDIM form): land on the guided x0 plus
    sigma_down along the unconditional noise, then add sigma_up of fresh noise. eta = 0 is euler_cfg_pp."""
    noise = require_noise(noise_sampler, "euler_ancestral_cfg_pp") if eta > 0 and s_noise > 0 else None
    model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        d = to_d(x, sigmas[i], last_uncond())
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = denoised + sigma_down * d
        if noise is not None:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Euler with CFG++ (Chung et al. 2024, Algorithm 1): x_next = x0_guided + sigma_next * eps_uncond."""
    return sample_euler_ancestral_cfg_pp(model, x, sigmas, callback=callback, eta=0.0, s_noise=0.0)


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2S) ancestral (Lu et al. 2022b) with CFG++ renoising (Chung et al. 2024): the
    exponential-integrator steps start from x shifted by (guided - unconditional) x0, midpoint r = 1/2.
    As in ComfyUI, the final update's shift takes the unconditional x0 of the midpoint evaluation."""
    noise = require_noise(noise_sampler, "dpmpp_2s_ancestral_cfg_pp")
    model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        uncond = last_uncond()
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        if sigma_down == 0:
            x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
        else:
            t, t_next = sigmas[i].log().neg(), sigma_down.log().neg()
            h = t_next - t
            s = t + 0.5 * h
            sigma_t, sigma_s = t.neg().exp(), s.neg().exp()
            x_2 = (sigma_s / sigma_t) * (x + (denoised - uncond)) - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, sigma_s * s_in)
            # as ComfyUI: the shift now uses the unconditional x0 of the midpoint evaluation
            x = (t_next.neg().exp() / sigma_t) * (x + (denoised - last_uncond())) - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) with CFG++: the multistep correction is taken
    between the guided x0 and the previous step's unconditional x0."""
    model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    old_uncond: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        uncond = last_uncond()
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t - sigmas[i - 1].log().neg()) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


@torch.no_grad()
def sample_euler_cfg_pp_alt(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """SamplerEulerCFG++'s "alternative" version: an Euler step along (x - 2 x0_guided + x0_uncond) / sigma,
    i.e. the guided slope with the guidance difference applied once more (no landing on x0)."""
    model, last_uncond = track_uncond(model)
    s_in = batch_ones(x)
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x - denoised + last_uncond(), sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x
