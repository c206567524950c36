"""Explicit multistep / extended-Heun ODE samplers in sigma (ComfyUI's ipndm, ipndm_v, heunpp2).

Same signature as ``k_samplers``: ``(model, x, sigmas, noise_sampler=None, callback=None)``.
"""

from __future__ import annotations

import torch

from engine.sampling.k_samplers import Denoiser, StepCallback, batch_ones, denoise_and_report, to_d
from engine.sampling.noise import NoiseSampler


def _push(buffer: list[torch.Tensor], d: torch.Tensor, max_order: int) -> None:
    if len(buffer) == max_order - 1:
        del buffer[0]
    buffer.append(d)


@torch.no_grad()
def sample_ipndm(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, max_order: int = 4,
) -> torch.Tensor:
    """Improved PNDM (Zhang & Chen 2023, DEIS paper): Adams-Bashforth with fixed-step coefficients, order <= 4."""
    s_in = batch_ones(x)
    buffer: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = denoise_and_report(model, x, t_cur, s_in, i, callback)
        d_cur = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (t_next - t_cur) * d_cur
        elif order == 2:
            x_next = x + (t_next - t_cur) * (3 * d_cur - buffer[-1]) / 2
        elif order == 3:
            x_next = x + (t_next - t_cur) * (23 * d_cur - 16 * buffer[-1] + 5 * buffer[-2]) / 12
        else:
            x_next = x + (t_next - t_cur) * (55 * d_cur - 59 * buffer[-1] + 37 * buffer[-2] - 9 * buffer[-3]) / 24
        _push(buffer, d_cur, max_order)
        x = x_next
    return x


@torch.no_grad()
def sample_ipndm_v(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None, max_order: int = 4,
) -> torch.Tensor:
    """iPNDM with variable-step Adams-Bashforth coefficients (Zhang & Chen 2023; diff-sampler's iPNDM-v)."""
    s_in = batch_ones(x)
    t = sigmas
    buffer: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = t[i], t[i + 1]
        denoised = denoise_and_report(model, x, t_cur, s_in, i, callback)
        d_cur = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x + (t_next - t_cur) * d_cur
        else:
            h0 = t_next - t_cur
            h1 = t_cur - t[i - 1]
            if order == 2:
                c1 = (2 + (h0 / h1)) / 2
                c2 = -(h0 / h1) / 2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buffer[-1])
            elif order == 3:
                h2 = t[i - 1] - t[i - 2]
                tmp = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
                c1 = (2 + (h0 / h1)) / 2 + tmp
                c2 = -(h0 / h1) / 2 - (1 + h1 / h2) * tmp
                c3 = tmp * h1 / h2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buffer[-1] + c3 * buffer[-2])
            else:
                h2 = t[i - 1] - t[i - 2]
                h3 = t[i - 2] - t[i - 3]
                tmp1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
                tmp2 = ((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2))) \
                    * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
                r = h1 * (h1 + h2) / (h2 * (h2 + h3))
                c1 = (2 + (h0 / h1)) / 2 + tmp1 + tmp2
                c2 = -(h0 / h1) / 2 - (1 + h1 / h2) * tmp1 - (1 + (h1 / h2) + r) * tmp2
                c3 = tmp1 * h1 / h2 + ((h1 / h2) + r * (1 + h2 / h3)) * tmp2
                c4 = -tmp2 * r * h1 / h2
                x_next = x + (t_next - t_cur) * (c1 * d_cur + c2 * buffer[-1] + c3 * buffer[-2] + c4 * buffer[-3])
        _push(buffer, d_cur, max_order)
        x = x_next
    return x


@torch.no_grad()
def sample_heunpp2(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
    noise_sampler: NoiseSampler | None = None, callback: StepCallback | None = None,
) -> torch.Tensor:
    """Heun++ (sd-webui-samplers-scheduler): Heun with a third slope look-ahead, weighted by sigma / sigma_max."""
    s_in = batch_ones(x)
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        denoised = denoise_and_report(model, x, sigmas[i], s_in, i, callback)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in))
            w = 3 * sigmas[0]
            w2 = sigmas[i + 1] / w
            w3 = sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x
