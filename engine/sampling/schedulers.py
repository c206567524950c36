"""Noise schedules: ``calculate_sigmas(model_sampling, name, steps)`` with ComfyUI's exact float32 values.

Each schedule returns a float32 tensor of decreasing sigmas, normally ``steps + 1`` long and ending in 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch


class ScheduleSource(Protocol):
    """What a schedule needs from a model's sampling object (see ``ModelSamplingDiscrete``)."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> torch.Tensor: ...

    @property
    def sigma_max(self) -> torch.Tensor: ...

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor: ...

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor: ...


def _with_zero(values: list[float]) -> torch.Tensor:
    return torch.tensor(values + [0.0], dtype=torch.float32)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append a trailing 0 to a 1-d sigma tensor."""
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 (EDM) eq. 5: a rho-th-root ramp between sigma_max and sigma_min."""
    ramp = torch.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Sigmas evenly spaced in log space."""
    return append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())


def kl_optimal_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """"Align Your Steps" KL-optimal schedule (Sabour et al. 2024): linear in arctan(sigma)."""
    idx = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    sigmas = idx.new_zeros(steps + 1)
    sigmas[:-1] = (idx * math.atan(sigma_min) + (1 - idx) * math.atan(sigma_max)).tan_()
    return sigmas


def normal_sigmas(ms: ScheduleSource, steps: int, sgm: bool = False) -> torch.Tensor:
    """Timesteps evenly spaced from the last to the first table entry, mapped to sigma (log interp)."""
    start = ms.timestep(ms.sigma_max)
    end = ms.timestep(ms.sigma_min)
    append = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0.0, abs_tol=1e-5):
            steps += 1
            append = False
        timesteps = torch.linspace(float(start), float(end), steps)
    values = [float(ms.sigma(t)) for t in timesteps]
    return _with_zero(values) if append else torch.tensor(values, dtype=torch.float32)


def simple_sigmas(ms: ScheduleSource, steps: int) -> torch.Tensor:
    """Every ``len(table)/steps``-th table sigma from the top."""
    stride = len(ms.sigmas) / steps
    return _with_zero([float(ms.sigmas[-(1 + int(i * stride))]) for i in range(steps)])


def ddim_uniform_sigmas(ms: ScheduleSource, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep skipping (Song et al. 2021): table indices 1, 1+s, 1+2s, ... reversed."""
    values: list[float]
    if math.isclose(float(ms.sigmas[1]), 0.0, abs_tol=1e-5):
        steps += 1
        values = []
    else:
        values = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    for idx in range(1, len(ms.sigmas), stride):
        values.append(float(ms.sigmas[idx]))
    return torch.tensor(values[::-1], dtype=torch.float32)


def beta_sigmas(ms: ScheduleSource, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Beta-distribution timestep spacing (Lee et al. 2024, "Beta Sampling is All You Need")."""
    from scipy.stats import beta as beta_dist  # heavy import; only when this schedule is used

    total = len(ms.sigmas) - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(beta_dist.ppf(ts, alpha, beta) * total)
    values: list[float] = []
    last = -1.0
    for t in ts:
        if t != last:
            values.append(float(ms.sigmas[int(t)]))
        last = t
    return _with_zero(values)


def linear_quadratic_sigmas(
    ms: ScheduleSource, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> torch.Tensor:
    """Linear then quadratic schedule in [0, 1] scaled by sigma_max (from Mochi / genmo)."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        lin = steps // 2 if linear_steps is None else linear_steps
        linear_part = [i * threshold_noise / lin for i in range(lin)]
        step_diff = lin - threshold_noise * steps
        quad_steps = steps - lin
        quad_coef = step_diff / (lin * quad_steps**2)
        lin_coef = threshold_noise / lin - 2 * step_diff / (quad_steps**2)
        const = quad_coef * (lin**2)
        quad_part = [quad_coef * (i**2) + lin_coef * i + const for i in range(lin, steps)]
        schedule = [1.0 - x for x in linear_part + quad_part + [1.0]]
    return torch.tensor(schedule, dtype=torch.float32) * ms.sigma_max.cpu()


_MODEL_SCHEDULES: dict[str, Callable[[ScheduleSource, int], torch.Tensor]] = {
    "simple": simple_sigmas,
    "sgm_uniform": lambda ms, n: normal_sigmas(ms, n, sgm=True),
    "ddim_uniform": ddim_uniform_sigmas,
    "beta": beta_sigmas,
    "normal": normal_sigmas,
    "linear_quadratic": linear_quadratic_sigmas,
}

_RANGE_SCHEDULES: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "karras": karras_sigmas,
    "exponential": exponential_sigmas,
    "kl_optimal": kl_optimal_sigmas,
}

# ComfyUI's option order (the first entry is the widget default).
SCHEDULER_NAMES: tuple[str, ...] = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)


def calculate_sigmas(model_sampling: ScheduleSource, scheduler: str, steps: int) -> torch.Tensor:
    """Sigmas for ``steps`` steps of the named schedule (float32, trailing 0)."""
    if steps < 1:
        raise ValueError(f"calculate_sigmas: steps must be >= 1, got {steps}")
    if scheduler in _MODEL_SCHEDULES:
        return _MODEL_SCHEDULES[scheduler](model_sampling, steps)
    if scheduler in _RANGE_SCHEDULES:
        lo, hi = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
        return _RANGE_SCHEDULES[scheduler](steps, lo, hi)
    raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULER_NAMES)}")
