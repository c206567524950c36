"""More SIGMAS nodes (ComfyUI names, inputs and defaults): the tabulated AlignYourSteps, GITS and
OptimalSteps schedules, ExtendIntermediateSigmas, and SamplingPercentToSigma (a FLOAT). The schedules are
in ``engine.sampling.sigma_tables``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_sampling import SchedulerNode, _model_in, _sigmas_in

if TYPE_CHECKING:
    import torch

__all__ = ["NODES"]

_DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
_SPACINGS = ["linear", "cosine", "sine"]


def _steps(node: str, steps: int, minimum: int) -> int:
    if int(steps) < minimum:
        raise input_error(node, "steps", f"must be >= {minimum}, got {steps}")
    return int(steps)


class AlignYourStepsScheduler(SchedulerNode):
    """NVIDIA's Align Your Steps noise levels for SD1 / SDXL / SVD, interpolated to the step count."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model_type": (["SD1", "SDXL", "SVD"],),
                             "steps": ("INT", {"default": 10, "min": 1, "max": 10000}), "denoise": _DENOISE}}

    def get_sigmas(self, model_type: str, steps: int, denoise: float) -> tuple[torch.Tensor]:
        from engine.sampling.sigma_tables import align_your_steps_sigmas

        node = "AlignYourStepsScheduler"
        try:
            return (align_your_steps_sigmas(model_type, _steps(node, steps, 1), float(denoise)),)
        except ValueError as exc:
            raise input_error(node, "model_type", str(exc)) from None


class GITSScheduler(SchedulerNode):
    """GITS time steps searched for SD1.5 at a coefficient of 0.80 .. 1.50 (2 .. 20 steps tabulated)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"coeff": ("FLOAT", {"default": 1.20, "min": 0.80, "max": 1.50, "step": 0.05}),
                             "steps": ("INT", {"default": 10, "min": 2, "max": 1000}), "denoise": _DENOISE}}

    def get_sigmas(self, coeff: float, steps: int, denoise: float) -> tuple[torch.Tensor]:
        from engine.sampling.sigma_tables import gits_sigmas

        node = "GITSScheduler"
        try:
            return (gits_sigmas(float(coeff), _steps(node, steps, 2), float(denoise)),)
        except ValueError as exc:
            raise input_error(node, "coeff", str(exc)) from None


class OptimalStepsScheduler(SchedulerNode):
    """Optimal Stepsize noise levels for the FLUX / Wan / Chroma flow models, interpolated to the step count."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model_type": (["FLUX", "Wan", "Chroma"],),
                             "steps": ("INT", {"default": 20, "min": 3, "max": 1000}), "denoise": _DENOISE}}

    def get_sigmas(self, model_type: str, steps: int, denoise: float) -> tuple[torch.Tensor]:
        from engine.sampling.sigma_tables import optimal_steps_sigmas

        node = "OptimalStepsScheduler"
        try:
            return (optimal_steps_sigmas(model_type, _steps(node, steps, 3), float(denoise)),)
        except ValueError as exc:
            raise input_error(node, "model_type", str(exc)) from None


class ExtendIntermediateSigmas(BuiltinNode):
    """Split each step whose sigma lies between end_at_sigma and start_at_sigma (-1: no limit) into `steps`."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "sigmas": ("SIGMAS",),
            "steps": ("INT", {"default": 2, "min": 1, "max": 100}),
            "start_at_sigma": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 20000.0, "step": 0.01,
                                         "round": False}),
            "end_at_sigma": ("FLOAT", {"default": 12.0, "min": 0.0, "max": 20000.0, "step": 0.01, "round": False}),
            "spacing": (list(_SPACINGS),),
        }}

    def extend(self, sigmas: Any, steps: int, start_at_sigma: float, end_at_sigma: float,
               spacing: str) -> tuple[torch.Tensor]:
        from engine.sampling.sigma_tables import extend_intermediate_sigmas

        node = "ExtendIntermediateSigmas"
        if spacing not in _SPACINGS:
            raise input_error(node, "spacing", f"must be one of {', '.join(_SPACINGS)}, got {spacing!r}")
        return (extend_intermediate_sigmas(_sigmas_in(node, sigmas), _steps(node, steps, 1), float(start_at_sigma),
                                           float(end_at_sigma), spacing),)  # type: ignore[arg-type]


class SamplingPercentToSigma(BuiltinNode):
    """The model's sigma at a fraction of its schedule (0: start, 1: end), as used by timestep ranges."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sigma_value",)
    FUNCTION = "get_sigma"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL", {}),
            "sampling_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
            "return_actual_sigma": ("BOOLEAN", {"default": False, "tooltip": (
                "Return the actual sigma value instead of the value used for interval checks.\n"
                "This only affects results at 0.0 and 1.0.")}),
        }}

    def get_sigma(self, model: Any, sampling_percent: float, return_actual_sigma: bool) -> tuple[float]:
        ms = _model_in("SamplingPercentToSigma", model).model_sampling
        sigma = float(ms.percent_to_sigma(float(sampling_percent)))
        if return_actual_sigma:
            if sampling_percent == 0.0:
                sigma = float(ms.sigma_max)
            elif sampling_percent == 1.0:
                sigma = float(ms.sigma_min)
        return (sigma,)


NODES: list[type] = [AlignYourStepsScheduler, GITSScheduler, OptimalStepsScheduler, ExtendIntermediateSigmas,
                     SamplingPercentToSigma]
