"""Tabulated and derived sigma schedules (ComfyUI's AlignYourStepsScheduler, GITSScheduler,
OptimalStepsScheduler, ExtendIntermediateSigmas).

- Align Your Steps (Sabour et al. 2024, "Align Your Steps: Optimizing Sampling Schedules in Diffusion
  Models", NVIDIA's published 10-step noise levels for SD1.5, SDXL and SVD).
- GITS (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion Sampling", ICML; the searched
  SD1.5 time steps per coefficient 0.80 .. 1.50 and step count 2 .. 20, tables/gits_noise_levels.json from
  zju-pi/diff-sampler, Apache-2.0).
- Optimal Stepsize (Pei et al. 2025, "Optimal Stepsize for Diffusion Sampling", bebebe666/OptimalSteps):
  FLUX, Wan and Chroma levels (flow models: sigma in 0..1).

Other step counts interpolate the table log-linearly; denoise < 1 keeps the last round(steps * denoise)
steps; the last sigma is always 0.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["AYS_LEVELS", "OPTIMAL_STEPS_LEVELS", "align_your_steps_sigmas", "extend_intermediate_sigmas",
           "gits_sigmas", "loglinear_interp", "optimal_steps_sigmas"]

AYS_LEVELS: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
            0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}

OPTIMAL_STEPS_LEVELS: dict[str, tuple[float, ...]] = {
    "FLUX": (0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.001),
    "Wan": (1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968, 0.96, 0.946, 0.927,
            0.902, 0.864, 0.776, 0.539, 0.208, 0.001),
    "Chroma": (0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943, 0.931, 0.917, 0.9,
               0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646, 0.599, 0.55, 0.501, 0.451, 0.402, 0.355,
               0.311, 0.27, 0.232, 0.199, 0.169, 0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001),
}

_GITS_FILE = Path(__file__).with_name("tables") / "gits_noise_levels.json"
Spacing = Literal["linear", "cosine", "sine"]


def loglinear_interp(levels: list[float] | tuple[float, ...], count: int) -> list[float]:
    """``count`` decreasing values interpolated linearly in log space over the decreasing ``levels`` (float64)."""
    xs = np.linspace(0, 1, len(levels))
    ys = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    out = np.exp(np.interp(np.linspace(0, 1, count), xs, ys))[::-1]
    return [float(v) for v in out]


def _finish(levels: list[float], steps: int, denoise: float) -> torch.Tensor:
    """The last round(steps * denoise) steps of a ``steps + 1`` schedule, its final sigma set to 0."""
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    kept = round(steps * denoise) if denoise < 1.0 else steps
    tail = levels[-(kept + 1):]
    tail[-1] = 0.0
    return torch.tensor(tail, dtype=torch.float32)


def _table_sigmas(levels: tuple[float, ...], steps: int, denoise: float) -> torch.Tensor:
    values = list(levels) if steps + 1 == len(levels) else loglinear_interp(levels, steps + 1)
    return _finish(values, steps, denoise)


def align_your_steps_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Align Your Steps schedule for ``model_type`` (SD1, SDXL or SVD)."""
    if model_type not in AYS_LEVELS:
        raise ValueError(f"AlignYourSteps: model_type must be one of {', '.join(AYS_LEVELS)}, got {model_type!r}")
    return _table_sigmas(AYS_LEVELS[model_type], steps, denoise)


def optimal_steps_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """Optimal Stepsize schedule for ``model_type`` (FLUX, Wan or Chroma)."""
    if model_type not in OPTIMAL_STEPS_LEVELS:
        raise ValueError(f"OptimalSteps: model_type must be one of {', '.join(OPTIMAL_STEPS_LEVELS)}, "
                         f"got {model_type!r}")
    return _table_sigmas(OPTIMAL_STEPS_LEVELS[model_type], steps, denoise)


@cache
def _gits_table() -> dict[str, list[list[float]]]:
    table: dict[str, list[list[float]]] = json.loads(_GITS_FILE.read_text())
    return table


def gits_sigmas(coeff: float, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """GITS schedule for SD1.5 at ``coeff`` (0.80 .. 1.50 in steps of 0.05) and ``steps`` >= 2; more than 20
    steps interpolate the 20-step table."""
    table = _gits_table()
    key = f"{round(coeff, 2):.2f}"
    if key not in table:
        raise ValueError(f"GITS: coeff must be one of {', '.join(table)}, got {coeff}")
    if steps < 2:
        raise ValueError(f"GITS: steps must be >= 2, got {steps}")
    rows = table[key]
    values = list(rows[steps - 2]) if steps <= 20 else loglinear_interp(rows[-1], steps + 1)
    return _finish(values, steps, denoise)


def _spacing(name: Spacing, x: torch.Tensor) -> torch.Tensor:
    if name == "linear":
        return x
    if name == "cosine":
        return torch.sin(x * math.pi / 2)
    if name == "sine":
        return 1 - torch.cos(x * math.pi / 2)
    raise ValueError(f"ExtendIntermediateSigmas: spacing must be linear, cosine or sine, got {name!r}")


def extend_intermediate_sigmas(sigmas: torch.Tensor, steps: int, start_at_sigma: float, end_at_sigma: float,
                               spacing: Spacing = "linear") -> torch.Tensor:
    """Insert ``steps - 1`` sigmas into every step whose start lies in [end_at_sigma, start_at_sigma]
    (start < 0: no upper bound), spaced linearly or by a quarter cosine / sine in the step."""
    upper = math.inf if start_at_sigma < 0 else start_at_sigma
    fractions = _spacing(spacing, torch.linspace(0, 1, steps + 1, device=sigmas.device)[1:-1])
    out: list[float] = []
    for i in range(len(sigmas) - 1):
        current, following = sigmas[i], sigmas[i + 1]
        out.append(float(current))
        if end_at_sigma <= float(current) <= upper:
            out.extend((fractions * (following - current) + current).tolist())
    if len(sigmas) > 0:
        out.append(float(sigmas[-1]))
    return torch.tensor(out, dtype=torch.float32)
