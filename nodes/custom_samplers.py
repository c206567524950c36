"""SAMPLER nodes with options (ComfyUI `comfy_extras/nodes_custom_sampler.py` names): a named engine sampler
with its keyword knobs (eta, s_noise, r, order, solver type, noise device) bound, for SamplerCustom /
SamplerCustomAdvanced.

Each node returns an ``engine.sampling.custom.SamplerChoice``; the knobs go to the sampler function as
keyword arguments, so default knobs give exactly the sampler KSampler runs under the same name.
``noise_device`` picks ComfyUI's name: ``gpu`` -> the ``_gpu`` variant (Brownian tree on the latent's
device), ``cpu`` -> the plain one (tree on the CPU).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from nodes._base import BuiltinNode, InputTypes, input_error

if TYPE_CHECKING:
    from engine.sampling.custom import SamplerChoice

__all__ = ["NODES"]

_CATEGORY = "sampling/custom_sampling/samplers"
_NOISE_DEVICES = ["gpu", "cpu"]
_SOLVER_TYPES = ["midpoint", "heun"]


def _knob(default: float, max_value: float = 100.0) -> tuple[str, dict[str, float | bool]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": max_value, "step": 0.01, "round": False})


def _choice(node: str, sampler_name: str, options: Mapping[str, object]) -> tuple[SamplerChoice]:
    """A SamplerChoice for ``sampler_name`` with ``options``, checked now so errors name this node."""
    from engine.sampling.custom import SamplerChoice

    choice = SamplerChoice(sampler_name, dict(options))
    try:
        choice.spec()
    except (TypeError, ValueError) as exc:
        raise input_error(node, next(iter(options), "sampler"), str(exc)) from None
    return (choice,)


def _device_name(node: str, base: str, noise_device: str) -> str:
    if noise_device not in _NOISE_DEVICES:
        raise input_error(node, "noise_device", f"must be one of {', '.join(_NOISE_DEVICES)}, got {noise_device!r}")
    return base if noise_device == "cpu" else f"{base}_gpu"


class SamplerNode(BuiltinNode):
    """Base of the SAMPLER-with-options nodes (category, output and function name)."""

    CATEGORY = _CATEGORY
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"


class SamplerEulerAncestral(SamplerNode):
    """euler_ancestral with its ancestral noise level eta (0: plain Euler steps) and noise scale s_noise."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"eta": _knob(1.0), "s_noise": _knob(1.0)}}

    def get_sampler(self, eta: float, s_noise: float) -> tuple[SamplerChoice]:
        return _choice("SamplerEulerAncestral", "euler_ancestral", {"eta": float(eta), "s_noise": float(s_noise)})


class SamplerLMS(SamplerNode):
    """Linear multistep with a chosen order (KSampler's lms is order 4)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"order": ("INT", {"default": 4, "min": 1, "max": 100})}}

    def get_sampler(self, order: int) -> tuple[SamplerChoice]:
        if int(order) < 1:
            raise input_error("SamplerLMS", "order", f"must be >= 1, got {order}")
        return _choice("SamplerLMS", "lms", {"order": int(order)})


class SamplerDPMPP_3M_SDE(SamplerNode):
    """DPM-Solver++(3M) SDE with its SDE strength, noise scale and Brownian-noise device."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"eta": _knob(1.0), "s_noise": _knob(1.0), "noise_device": (list(_NOISE_DEVICES),)}}

    def get_sampler(self, eta: float, s_noise: float, noise_device: str) -> tuple[SamplerChoice]:
        node = "SamplerDPMPP_3M_SDE"
        return _choice(node, _device_name(node, "dpmpp_3m_sde", noise_device),
                       {"eta": float(eta), "s_noise": float(s_noise)})


class SamplerDPMPP_2M_SDE(SamplerNode):
    """DPM-Solver++(2M) SDE: midpoint or Heun correction, SDE strength, noise scale, noise device."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"solver_type": (list(_SOLVER_TYPES),), "eta": _knob(1.0), "s_noise": _knob(1.0),
                             "noise_device": (list(_NOISE_DEVICES),)}}

    def get_sampler(self, solver_type: str, eta: float, s_noise: float, noise_device: str) -> tuple[SamplerChoice]:
        node = "SamplerDPMPP_2M_SDE"
        if solver_type not in _SOLVER_TYPES:
            raise input_error(node, "solver_type", f"must be one of {', '.join(_SOLVER_TYPES)}, got {solver_type!r}")
        return _choice(node, _device_name(node, "dpmpp_2m_sde", noise_device),
                       {"eta": float(eta), "s_noise": float(s_noise), "solver_type": solver_type})


class SamplerDPMPP_SDE(SamplerNode):
    """DPM-Solver++ SDE (single-step): SDE strength, noise scale, intermediate step ratio r, noise device."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"eta": _knob(1.0), "s_noise": _knob(1.0), "r": _knob(0.5),
                             "noise_device": (list(_NOISE_DEVICES),)}}

    def get_sampler(self, eta: float, s_noise: float, r: float, noise_device: str) -> tuple[SamplerChoice]:
        node = "SamplerDPMPP_SDE"
        if not float(r) > 0.0:
            raise input_error(node, "r", f"must be > 0 (the intermediate step sits at r of the step), got {r}")
        return _choice(node, _device_name(node, "dpmpp_sde", noise_device),
                       {"eta": float(eta), "s_noise": float(s_noise), "r": float(r)})


class SamplerDPMPP_2S_Ancestral(SamplerNode):
    """DPM-Solver++(2S) ancestral with its ancestral noise level and noise scale."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"eta": _knob(1.0), "s_noise": _knob(1.0)}}

    def get_sampler(self, eta: float, s_noise: float) -> tuple[SamplerChoice]:
        return _choice("SamplerDPMPP_2S_Ancestral", "dpmpp_2s_ancestral",
                       {"eta": float(eta), "s_noise": float(s_noise)})


class SamplerDPMAdaptative(SamplerNode):
    """Adaptive-step DPM-Solver-2/3: tolerances, first step, PID controller and optional ancestral noise."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "order": ("INT", {"default": 3, "min": 2, "max": 3}),
            "rtol": _knob(0.05), "atol": _knob(0.0078), "h_init": _knob(0.05), "pcoeff": _knob(0.0),
            "icoeff": _knob(1.0), "dcoeff": _knob(0.0), "accept_safety": _knob(0.81), "eta": _knob(0.0),
            "s_noise": _knob(1.0),
        }}

    def get_sampler(self, order: int, rtol: float, atol: float, h_init: float, pcoeff: float, icoeff: float,
                    dcoeff: float, accept_safety: float, eta: float, s_noise: float) -> tuple[SamplerChoice]:
        node = "SamplerDPMAdaptative"
        if int(order) not in (2, 3):
            raise input_error(node, "order", f"must be 2 or 3, got {order}")
        if not float(h_init) > 0.0:
            raise input_error(node, "h_init", f"must be > 0 (the first step size), got {h_init}")
        options = {"order": int(order), "rtol": float(rtol), "atol": float(atol), "h_init": float(h_init),
                   "pcoeff": float(pcoeff), "icoeff": float(icoeff), "dcoeff": float(dcoeff),
                   "accept_safety": float(accept_safety), "eta": float(eta), "s_noise": float(s_noise)}
        return _choice(node, "dpm_adaptive", options)


NODES: list[type] = [
    SamplerEulerAncestral, SamplerLMS, SamplerDPMPP_3M_SDE, SamplerDPMPP_2M_SDE, SamplerDPMPP_SDE,
    SamplerDPMPP_2S_Ancestral, SamplerDPMAdaptative,
]
