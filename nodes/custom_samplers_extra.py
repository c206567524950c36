"""More SAMPLER nodes with options (ComfyUI names, inputs and defaults): CFG++ Euler (SamplerEulerCFGpp,
SamplerEulerAncestralCFGPP), ER-SDE (SamplerER_SDE), SA-Solver (SamplerSASolver) and LCM with a growing
latent (SamplerLCMUpscale). Each returns a SAMPLER for SamplerCustom / SamplerCustomAdvanced; the samplers
are in ``engine.sampling`` (cfg_pp, sde_solvers, sa_solver, lcm_upscale).
"""
from __future__ import annotations

from functools import partial
from typing import Any

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_samplers import SamplerNode, _choice
from nodes.custom_sampling import _model_in

__all__ = ["NODES"]

_ER_SDE_TYPES = ["ER-SDE", "Reverse-time SDE", "ODE"]
_LCM_UPSCALE_METHODS = ["bislerp", "nearest-exact", "bilinear", "area", "bicubic"]


def _float(default: float, max_value: float, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": max_value, "step": 0.01, "round": False, **extra})


class SamplerEulerCFGpp(BuiltinNode):
    """Euler with CFG++ ("regular": ComfyUI's euler_cfg_pp; "alternative": its older slope-only variant)."""

    DISPLAY_NAME = "SamplerEulerCFG++"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"version": (["regular", "alternative"],)}}

    def get_sampler(self, version: str) -> tuple[Any]:
        from engine.sampling.cfg_pp import sample_euler_cfg_pp_alt
        from engine.sampling.samplers import SamplerSpec

        if version == "regular":
            return _choice("SamplerEulerCFGpp", "euler_cfg_pp", {})
        if version == "alternative":
            return (SamplerSpec(sample_euler_cfg_pp_alt),)
        raise input_error("SamplerEulerCFGpp", "version", f"must be regular or alternative, got {version!r}")


class SamplerEulerAncestralCFGPP(SamplerNode):
    """Euler ancestral with CFG++: ancestral noise level eta (0..1) and noise scale s_noise."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"eta": _float(1.0, 1.0), "s_noise": _float(1.0, 10.0)}}

    def get_sampler(self, eta: float, s_noise: float) -> tuple[Any]:
        return _choice("SamplerEulerAncestralCFGPP", "euler_ancestral_cfg_pp",
                       {"eta": float(eta), "s_noise": float(s_noise)})


class SamplerER_SDE(SamplerNode):
    """ER-SDE-Solver: the ER-SDE noise scale, the reverse-time SDE of strength eta, or the ODE; 1-3 stages."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "solver_type": (list(_ER_SDE_TYPES),),
            "max_stage": ("INT", {"default": 3, "min": 1, "max": 3}),
            "eta": _float(1.0, 100.0, tooltip=(
                "Stochastic strength of reverse-time SDE.\nWhen eta=0, it reduces to deterministic ODE. "
                "This setting doesn't apply to ER-SDE solver type.")),
            "s_noise": _float(1.0, 100.0),
        }}

    def get_sampler(self, solver_type: str, max_stage: int, eta: float, s_noise: float) -> tuple[Any]:
        from engine.sampling.sde_solvers import PowerNoiseScaler

        node = "SamplerER_SDE"
        if solver_type not in _ER_SDE_TYPES:
            raise input_error(node, "solver_type", f"must be one of {', '.join(_ER_SDE_TYPES)}, got {solver_type!r}")
        if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0.0, 0.0
        scaler = None if solver_type == "ER-SDE" else PowerNoiseScaler(float(eta))
        return _choice(node, "er_sde", {"s_noise": float(s_noise), "noise_scaler": scaler,
                                        "max_stage": int(max_stage)})


class SamplerSASolver(SamplerNode):
    """SA-Solver: SDE strength eta between two fractions of the model's schedule, predictor / corrector
    orders, PECE mode and the simple order-2 coefficients."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        percent = ("FLOAT", {"min": 0.0, "max": 1.0, "step": 0.001})
        return {"required": {
            "model": ("MODEL", {}),
            "eta": _float(1.0, 10.0),
            "sde_start_percent": (percent[0], {"default": 0.2, **percent[1]}),
            "sde_end_percent": (percent[0], {"default": 0.8, **percent[1]}),
            "s_noise": _float(1.0, 100.0),
            "predictor_order": ("INT", {"default": 3, "min": 1, "max": 6}),
            "corrector_order": ("INT", {"default": 4, "min": 0, "max": 6}),
            "use_pece": ("BOOLEAN", {}),
            "simple_order_2": ("BOOLEAN", {}),
        }}

    def get_sampler(self, model: Any, eta: float, sde_start_percent: float, sde_end_percent: float,
                    s_noise: float, predictor_order: int, corrector_order: int, use_pece: bool,
                    simple_order_2: bool) -> tuple[Any]:
        from engine.sampling.sa_solver import TauInterval

        node = "SamplerSASolver"
        ms = _model_in(node, model).model_sampling
        tau = TauInterval(float(ms.percent_to_sigma(sde_start_percent)), float(ms.percent_to_sigma(sde_end_percent)),
                          float(eta))
        return _choice(node, "sa_solver", {
            "tau_func": tau, "s_noise": float(s_noise), "predictor_order": int(predictor_order),
            "corrector_order": int(corrector_order), "use_pece": bool(use_pece),
            "simple_order_2": bool(simple_order_2)})


class SamplerLCMUpscale(SamplerNode):
    """LCM sampling that upscales the x0 estimate step by step to scale_ratio times the latent size
    (scale_steps < 0: over the first half of the schedule)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "scale_ratio": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 20.0, "step": 0.01}),
            "scale_steps": ("INT", {"default": -1, "min": -1, "max": 1000, "step": 1}),
            "upscale_method": (list(_LCM_UPSCALE_METHODS),),
        }}

    def get_sampler(self, scale_ratio: float, scale_steps: int, upscale_method: str) -> tuple[Any]:
        from engine.sampling.lcm_upscale import sample_lcm_upscale
        from engine.sampling.samplers import SamplerSpec

        node = "SamplerLCMUpscale"
        if upscale_method not in _LCM_UPSCALE_METHODS:
            raise input_error(node, "upscale_method",
                              f"must be one of {', '.join(_LCM_UPSCALE_METHODS)}, got {upscale_method!r}")
        if not float(scale_ratio) > 0:
            raise input_error(node, "scale_ratio", f"must be > 0, got {scale_ratio}")
        fn = partial(sample_lcm_upscale, total_upscale=float(scale_ratio), upscale_method=upscale_method,
                     upscale_steps=None if scale_steps < 0 else int(scale_steps))
        return (SamplerSpec(fn, "gaussian"),)


NODES: list[type] = [SamplerEulerCFGpp, SamplerEulerAncestralCFGPP, SamplerER_SDE, SamplerSASolver,
                     SamplerLCMUpscale]
