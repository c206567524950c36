"""ComfyUI's `comfy.model_sampling` for packs: discrete noise schedules built from a model config, as ComfyUI's
`model_sampling(model_config, model_type)` builds them (a schedule class mixed with a prediction class).

`ModelSamplingDiscrete` is Loom's discrete schedule (`engine.sampling.model_sampling.DiscreteSchedule`, what a
MODEL handle's schedule is built on) behind ComfyUI's constructor: `model_config.sampling_settings` picks the beta
schedule (`engine.sampling.model_sampling.make_beta_schedule`), `_register_schedule` / `set_sigmas` replace the
table. The prediction classes (`EPS`, `V_PREDICTION`) are Loom's eps / v parameterisation (`EpsVPrediction`), so a
schedule built here can be put on a MODEL (`add_object_patch("model_sampling", ...)`) and sampled with.
"""
from __future__ import annotations

from typing import Any

import torch

from engine.sampling.model_sampling import (
    DiscreteSchedule,
    EpsVPrediction,
    Prediction,
    make_beta_schedule,
    rescale_zero_terminal_snr,
)

__all__ = ["EPS", "V_PREDICTION", "ModelSamplingDiscrete", "rescale_zero_terminal_snr_sigmas"]

rescale_zero_terminal_snr_sigmas = rescale_zero_terminal_snr


class EPS(EpsVPrediction):
    """Epsilon prediction (mixed into a schedule class, as in ComfyUI): Loom's parameterisation."""

    prediction: Prediction = "eps"


class V_PREDICTION(EPS):  # noqa: N801  (ComfyUI's name)
    """v prediction (Salimans & Ho 2022)."""

    prediction: Prediction = "v"


class ModelSamplingDiscrete(DiscreteSchedule):
    """A discrete DDPM schedule from ``model_config.sampling_settings`` (``beta_schedule``, ``linear_start``,
    ``linear_end``, ``timesteps``, ``zsnr``), ComfyUI's constructor over Loom's schedule (mix in a prediction
    class to sample with it)."""

    def __init__(self, model_config: Any = None, zsnr: bool | None = None) -> None:
        settings: dict[str, Any] = dict(getattr(model_config, "sampling_settings", None) or {})
        self._register_schedule(given_betas=None, beta_schedule=settings.get("beta_schedule", "linear"),
                                timesteps=settings.get("timesteps", 1000),
                                linear_start=settings.get("linear_start", 0.00085),
                                linear_end=settings.get("linear_end", 0.012),
                                zsnr=bool(settings.get("zsnr", False) if zsnr is None else zsnr))

    def _register_schedule(self, given_betas: torch.Tensor | None = None, beta_schedule: str = "linear",
                           timesteps: int = 1000, linear_start: float = 1e-4, linear_end: float = 2e-2,
                           cosine_s: float = 8e-3, zsnr: bool = False) -> None:
        """Build the sigma table from betas (given, or of the named schedule), as ComfyUI's method does."""
        betas = (torch.as_tensor(given_betas, dtype=torch.float64) if given_betas is not None
                 else make_beta_schedule(beta_schedule, timesteps, linear_start, linear_end, cosine_s))
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.num_timesteps = int(betas.shape[0])
        self.linear_start = linear_start
        self.linear_end = linear_end
        self.zero_snr = zsnr
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.set_sigmas(rescale_zero_terminal_snr(sigmas) if zsnr else sigmas)

    @property
    def zsnr(self) -> bool:
        """ComfyUI's name for the zero-terminal-SNR flag."""
        return self.zero_snr

    def set_sigmas(self, sigmas: torch.Tensor) -> None:
        """Replace the sigma table (ComfyUI stores float32 sigmas and their logs)."""
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
