"""More SIGMAS sources and AddNoise (ComfyUI `comfy_extras/nodes_custom_sampler.py` names): the VP and
Laplace schedules, a typed-in schedule (ManualSigmas), and noise added to a latent at a schedule's level.

    VPScheduler     sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), t from 1 to eps_s, then 0
    LaplaceScheduler  log sigma = mu - beta sign(0.5 - u) log(1 - 2|0.5 - u| + 1e-5), u in [0, 1], clamped
                    to [sigma_min, sigma_max]; no trailing 0 (as in ComfyUI: sampling stops at sigma_min)
    ManualSigmas    every number in the string, in order
    AddNoise        latent + noise * |sigmas[0] - sigmas[-1]| in the model's latent space
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from engine.types import Latent, NoiseSource
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_sampling import SchedulerNode, _latent_in, _model_in, _sigmas_in

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle

__all__ = ["NODES", "laplace_sigmas", "parse_sigmas", "vp_sigmas"]

_STEPS = ("INT", {"default": 20, "min": 1, "max": 10000})
_SIGMA_MAX = ("FLOAT", {"default": 14.614642, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_SIGMA_MIN = ("FLOAT", {"default": 0.0291675, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_NUMBER = re.compile(r"[-+]?\d*\.*\d+")


def vp_sigmas(steps: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous variance-preserving schedule (Song et al. 2021) at ``steps`` times from 1 to eps_s, plus 0."""
    import torch

    t = torch.linspace(1, eps_s, steps)
    sigmas = torch.special.expm1(beta_d * t**2 / 2 + beta_min * t).sqrt()
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def laplace_sigmas(steps: int, sigma_min: float, sigma_max: float, mu: float = 0.0,
                   beta: float = 0.5) -> torch.Tensor:
    """Laplace-distributed log sigmas (Tiankai et al. 2024), clamped to [sigma_min, sigma_max]; no trailing 0."""
    import torch

    u = torch.linspace(0, 1, steps)
    offset = 0.5 - u
    log_sigma = mu - beta * torch.sign(offset) * torch.log(1 - 2 * torch.abs(offset) + 1e-5)
    return torch.clamp(torch.exp(log_sigma), min=sigma_min, max=sigma_max)


def parse_sigmas(text: str) -> list[float]:
    """Every number in ``text`` (commas, spaces or anything else between them), in order."""
    return [float(n) for n in _NUMBER.findall(text)]


class VPScheduler(SchedulerNode):
    """Variance-preserving SDE schedule (beta_d, beta_min, eps_s), trailing 0."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "steps": _STEPS,
            "beta_d": ("FLOAT", {"default": 19.9, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
            "beta_min": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
            "eps_s": ("FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0, "step": 0.0001, "round": False}),
        }}

    def get_sigmas(self, steps: int, beta_d: float, beta_min: float, eps_s: float) -> tuple[torch.Tensor]:
        if steps < 1:
            raise input_error("VPScheduler", "steps", f"must be >= 1, got {steps}")
        return (vp_sigmas(int(steps), float(beta_d), float(beta_min), float(eps_s)),)


class LaplaceScheduler(SchedulerNode):
    """Laplace schedule around log sigma = mu with scale beta, between sigma_min and sigma_max."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
            "mu": ("FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.1, "round": False}),
            "beta": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.1, "round": False}),
        }}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, mu: float,
                   beta: float) -> tuple[torch.Tensor]:
        if steps < 1:
            raise input_error("LaplaceScheduler", "steps", f"must be >= 1, got {steps}")
        if sigma_min > sigma_max:
            raise input_error("LaplaceScheduler", "sigma_min", f"{sigma_min} is above sigma_max {sigma_max}")
        return (laplace_sigmas(int(steps), float(sigma_min), float(sigma_max), float(mu), float(beta)),)


class ManualSigmas(BuiltinNode):
    """SIGMAS typed in as text: every number in the string, in order (e.g. "14.6, 7, 3, 1, 0")."""

    CATEGORY = "_for_testing/custom_sampling"
    EXPERIMENTAL = True
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sigmas": ("STRING", {"default": "1, 0.5", "multiline": False})}}

    def get_sigmas(self, sigmas: str) -> tuple[torch.Tensor]:
        import torch

        if not isinstance(sigmas, str):
            raise input_error("ManualSigmas", "sigmas", f"expected a STRING of numbers, got {type(sigmas).__name__}")
        return (torch.tensor(parse_sigmas(sigmas), dtype=torch.float32),)


class AddNoise(BuiltinNode):
    """Add NOISE to a latent at the schedule's noise level |sigmas[0] - sigmas[-1]| (in the model's space)."""

    CATEGORY = "_for_testing/custom_sampling/noise"
    EXPERIMENTAL = True
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "add_noise"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "noise": ("NOISE",), "sigmas": ("SIGMAS",),
                             "latent_image": ("LATENT",)}}

    def add_noise(self, model: ModelHandle, noise: NoiseSource, sigmas: torch.Tensor, latent_image: Latent) -> tuple[Latent]:
        import torch

        node = "AddNoise"
        model = _model_in(node, model)
        sigmas = _sigmas_in(node, sigmas)
        latent = _latent_in(node, latent_image)
        if sigmas.shape[0] == 0:
            return (latent,)
        if not callable(getattr(noise, "generate_noise", None)):
            raise input_error(node, "noise", f"expected a NOISE (e.g. from RandomNoise), got {type(noise).__name__}")
        samples: torch.Tensor = latent["samples"]
        drawn = noise.generate_noise(latent)
        if tuple(drawn.shape) != tuple(samples.shape):
            raise input_error(node, "noise", f"the noise has shape {tuple(drawn.shape)} but the latent has "
                                             f"{tuple(samples.shape)}")
        scale = torch.abs(sigmas[0] - sigmas[-1]) if sigmas.shape[0] > 1 else sigmas[0]
        fmt = model.latent_format
        base = samples
        if torch.count_nonzero(samples) > 0:  # an empty latent stays 0 (no shift into model space)
            base = fmt.process_in(samples)
        noisy = model.model_sampling.noise_scaling(scale.to(drawn.device), drawn, base.to(drawn.device))
        noisy = fmt.process_out(noisy)
        out = latent.copy()
        out["samples"] = torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)
        return (out,)


NODES: list[type] = [LaplaceScheduler, VPScheduler, ManualSigmas, AddNoise]
