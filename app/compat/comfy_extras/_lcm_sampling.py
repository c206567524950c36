"""ComfyUI's LCM schedule classes (served as names of `comfy_extras.nodes_model_advanced`): `LCM`, the latent
consistency model parameterisation, and `ModelSamplingDiscreteDistilled`, the discrete schedule reduced to the
`original_timesteps` steps a distilled model was trained on; packs mix them (AnimateDiff-Evolved's LCM beta
schedules) as ComfyUI's ModelSamplingDiscrete node does for `sampling="lcm"`.
"""
from __future__ import annotations

import comfy.model_sampling
import torch

from engine.sampling.model_sampling import rescale_zero_terminal_snr

__all__ = ["LCM", "ModelSamplingDiscreteDistilled", "rescale_zero_terminal_snr_sigmas"]

rescale_zero_terminal_snr_sigmas = rescale_zero_terminal_snr
_SIGMA_DATA = 0.5  # the consistency-model boundary condition's sigma_data (Song et al. 2023, LCM's choice)
_TIMESTEP_SCALING = 10.0


class LCM(comfy.model_sampling.EPS):  # type: ignore[misc]  # a shim base
    """Latent consistency model output (Luo et al. 2023): x0 = c_skip(t) * x + c_out(t) * (x - sigma * eps), with
    c_skip / c_out the boundary-condition weights at the scaled integer timestep."""

    def calculate_denoised(self, sigma: torch.Tensor | float, model_output: torch.Tensor,
                           model_input: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=model_output.dtype, device=model_output.device).reshape(-1)
        column = (s.shape[0],) + (1,) * (model_output.ndim - 1)
        t = self.timestep(s).reshape(column).to(model_output.dtype) * _TIMESTEP_SCALING
        x0 = model_input - model_output * s.reshape(column)
        c_skip = _SIGMA_DATA**2 / (t**2 + _SIGMA_DATA**2)
        c_out = t / (t**2 + _SIGMA_DATA**2) ** 0.5
        out: torch.Tensor = c_out * x0 + c_skip * model_input
        return out


class ModelSamplingDiscreteDistilled(comfy.model_sampling.ModelSamplingDiscrete):  # type: ignore[misc]
    """The discrete schedule at every `num_timesteps // original_timesteps`-th step, ending at the last one; its
    timesteps are the full schedule's (step index * skip + skip - 1)."""

    original_timesteps = 50

    def __init__(self, model_config: object = None, zsnr: bool | None = None) -> None:
        super().__init__(model_config, zsnr=zsnr)
        self.skip_steps = self.num_timesteps // self.original_timesteps
        picks = [self.num_timesteps - 1 - i * self.skip_steps for i in range(self.original_timesteps)][::-1]
        self.set_sigmas(self.sigmas[torch.tensor(picks)])

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        index: torch.Tensor = super().timestep(sigma)
        step: torch.Tensor = index * self.skip_steps + (self.skip_steps - 1)
        return step

    def sigma(self, timestep: torch.Tensor | float) -> torch.Tensor:
        ts = torch.as_tensor(timestep)
        sigma: torch.Tensor = super().sigma((ts.float() - (self.skip_steps - 1)) / self.skip_steps)
        return sigma
