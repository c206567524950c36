"""Guidance and model-sampling patches (ComfyUI names, inputs and categories): each clones the MODEL and sets
one ``model_options`` sampler hook (CFGZeroStar, CFGNorm, APG, TCFG, Mahiro, RenormCFG, Epsilon Scaling,
PerpNeg) or replaces its model sampling (ModelSamplingContinuousEDM / V). The hook functions live in
``engine.sampling.guidance`` / ``engine.sampling.guiders``; these nodes choose and parameterise them.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_sampling import _model_in

__all__ = ["NODES"]


def _ratio(default: float, lo: float, hi: float, step: float = 0.01, **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra})


class ModelPatchNode(BuiltinNode):
    """Base of the nodes that return a patched clone of their MODEL input."""

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"


class CFGZeroStar(ModelPatchNode):
    """CFG-Zero*: rescale the negative prediction by the optimised scale of the noise predictions."""

    CATEGORY = "advanced/guidance"
    RETURN_NAMES = ("patched_model",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model: Any) -> tuple[Any]:
        from engine.sampling.guidance import cfg_zero_star

        m = _model_in("CFGZeroStar", model).clone()
        m.set_model_sampler_post_cfg_function(cfg_zero_star)
        return (m,)


class CFGNorm(ModelPatchNode):
    """Cap the guided prediction's channel norm at the positive prediction's, times strength."""

    CATEGORY = "advanced/guidance"
    EXPERIMENTAL = True
    RETURN_NAMES = ("patched_model",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "strength": _ratio(1.0, 0.0, 100.0)}}

    def patch(self, model: Any, strength: float) -> tuple[Any]:
        from engine.sampling.guidance import cfg_norm

        m = _model_in("CFGNorm", model).clone()
        m.set_model_sampler_post_cfg_function(partial(cfg_norm, strength=float(strength)))
        return (m,)


class APG(ModelPatchNode):
    """Adaptive Projected Guidance: guidance split into parts parallel / orthogonal to the positive
    prediction, the parallel part scaled by eta, with a norm threshold and momentum."""

    DISPLAY_NAME = "Adaptive Projected Guidance"
    CATEGORY = "sampling/custom_sampling"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "eta": _ratio(1.0, -10.0, 10.0, tooltip=(
                "Controls the scale of the parallel guidance vector. Default CFG behavior at a setting of 1.")),
            "norm_threshold": _ratio(5.0, 0.0, 50.0, 0.1, tooltip=(
                "Normalize guidance vector to this value, normalization disable at a setting of 0.")),
            "momentum": _ratio(0.0, -5.0, 1.0, tooltip=(
                "Controls a running average of guidance during diffusion, disabled at a setting of 0.")),
        }}

    def patch(self, model: Any, eta: float, norm_threshold: float, momentum: float) -> tuple[Any]:
        from engine.sampling.guidance import ApgPreCfg

        m = _model_in("APG", model).clone()
        m.set_model_sampler_pre_cfg_function(ApgPreCfg(float(eta), float(norm_threshold), float(momentum)))
        return (m,)


class TCFG(ModelPatchNode):
    """Tangential Damping CFG: the negative prediction aligned with the positive one before CFG."""

    DISPLAY_NAME = "Tangential Damping CFG"
    CATEGORY = "advanced/guidance"
    DESCRIPTION = ("TCFG – Tangential Damping CFG (2503.18137)\n\nRefine the uncond (negative) to align with the "
                   "cond (positive) for improving quality.")
    RETURN_NAMES = ("patched_model",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model: Any) -> tuple[Any]:
        from engine.sampling.guidance import tangential_damping_cfg

        m = _model_in("TCFG", model).clone()
        m.set_model_sampler_pre_cfg_function(tangential_damping_cfg)
        return (m,)


class Mahiro(ModelPatchNode):
    """Scale more along the positive prompt's direction than along its difference from the negative."""

    DISPLAY_NAME = "Mahiro is so cute that she deserves a better guidance function!! (。・ω・。)"
    CATEGORY = "_for_testing"
    DESCRIPTION = ("Modify the guidance to scale more on the 'direction' of the positive prompt rather than the "
                   "difference between the negative prompt.")
    EXPERIMENTAL = True
    RETURN_NAMES = ("patched_model",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model: Any) -> tuple[Any]:
        from engine.sampling.guidance import mahiro

        m = _model_in("Mahiro", model).clone()
        m.set_model_sampler_post_cfg_function(mahiro)
        return (m,)


class RenormCFG(ModelPatchNode):
    """CFG while sigma < cfg_trunc (the positive prediction after), its norm capped at renorm_cfg x the
    positive's (0: no cap)."""

    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "cfg_trunc": _ratio(100, 0.0, 100.0),
                             "renorm_cfg": _ratio(1.0, 0.0, 100.0)}}

    def patch(self, model: Any, cfg_trunc: float, renorm_cfg: float) -> tuple[Any]:
        from engine.sampling.guidance import renorm_cfg as renorm

        m = _model_in("RenormCFG", model).clone()
        in_channels = int(getattr(model, "in_channels", 4))
        m.set_model_sampler_cfg_function(partial(renorm, cfg_trunc=float(cfg_trunc), renorm=float(renorm_cfg),
                                                 in_channels=in_channels))
        return (m,)


class EpsilonScaling(ModelPatchNode):
    """Epsilon Scaling (uniform schedule): the guided noise prediction divided by scaling_factor."""

    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",),
                             "scaling_factor": _ratio(1.005, 0.5, 1.5, 0.001, display="number")}}

    def patch(self, model: Any, scaling_factor: float) -> tuple[Any]:
        from engine.sampling.guidance import epsilon_scaling

        factor = float(scaling_factor) or 1e-9  # as ComfyUI: never divide by zero
        m = _model_in("Epsilon Scaling", model).clone()
        m.set_model_sampler_post_cfg_function(partial(epsilon_scaling, factor=factor))
        return (m,)


EpsilonScaling.__name__ = "Epsilon Scaling"  # ComfyUI's node id has a space; the registry keys on __name__


class PerpNeg(ModelPatchNode):
    """Perp-Neg as a model patch (deprecated in ComfyUI in favour of PerpNegGuider)."""

    DISPLAY_NAME = "Perp-Neg (DEPRECATED by PerpNegGuider)"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "empty_conditioning": ("CONDITIONING",),
                             "neg_scale": _ratio(1.0, 0.0, 100.0)}}

    def patch(self, model: Any, empty_conditioning: Any, neg_scale: float) -> tuple[Any]:
        from engine.sampling.guiders import ThirdCondPrediction, perp_neg_cfg_function

        m = _model_in("PerpNeg", model).clone()
        empty = ThirdCondPrediction(empty_conditioning, "negative", "empty_conditioning")
        m.set_model_sampler_cfg_function(perp_neg_cfg_function(empty, float(neg_scale)))
        return (m,)


_EDM_SAMPLINGS = {"v_prediction": ("v", 1.0), "edm": ("edm", 0.5), "edm_playground_v2.5": ("edm", 0.5),
                  "eps": ("eps", 1.0)}


class ModelSamplingContinuousEDM(ModelPatchNode):
    """Continuous EDM noise levels (t = log(sigma) / 4) with an eps, v or EDM output, between sigma_min and
    sigma_max; edm_playground_v2.5 also sets Playground v2.5's per-channel latent normalisation."""

    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "sampling": (["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"],),
            "sigma_max": ("FLOAT", {"default": 120.0, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
            "sigma_min": ("FLOAT", {"default": 0.002, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
        }}

    def patch(self, model: Any, sampling: str, sigma_max: float, sigma_min: float) -> tuple[Any]:
        from engine.sampling.model_sampling_continuous import PLAYGROUND_V25
        from engine.sampling.model_sampling_continuous import ModelSamplingContinuousEDM as Sampling

        node = "ModelSamplingContinuousEDM"
        if sampling not in _EDM_SAMPLINGS:
            raise input_error(node, "sampling", f"{sampling!r} is not supported yet (it needs a model family Loom "
                                                f"does not load); pick one of {', '.join(_EDM_SAMPLINGS)}")
        prediction, sigma_data = _EDM_SAMPLINGS[sampling]
        m = _model_in(node, model).clone()
        try:
            m.model_sampling = Sampling(prediction, float(sigma_min), float(sigma_max), sigma_data)  # type: ignore[arg-type]
        except ValueError as exc:
            raise input_error(node, "sigma_min", str(exc)) from None
        if sampling == "edm_playground_v2.5":
            m.latent_format = PLAYGROUND_V25
        return (m,)


class ModelSamplingContinuousV(ModelPatchNode):
    """Continuous v-prediction (t = atan(sigma) * 2 / pi) between sigma_min and sigma_max."""

    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "sampling": (["v_prediction"],),
            "sigma_max": ("FLOAT", {"default": 500.0, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
            "sigma_min": ("FLOAT", {"default": 0.03, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
        }}

    def patch(self, model: Any, sampling: str, sigma_max: float, sigma_min: float) -> tuple[Any]:
        from engine.sampling.model_sampling_continuous import ModelSamplingContinuousV as Sampling

        node = "ModelSamplingContinuousV"
        if sampling != "v_prediction":
            raise input_error(node, "sampling", f"must be v_prediction, got {sampling!r}")
        m = _model_in(node, model).clone()
        try:
            m.model_sampling = Sampling("v", float(sigma_min), float(sigma_max), 1.0)
        except ValueError as exc:
            raise input_error(node, "sigma_min", str(exc)) from None
        return (m,)


NODES: list[type] = [CFGZeroStar, CFGNorm, APG, TCFG, Mahiro, RenormCFG, EpsilonScaling, PerpNeg,
                     ModelSamplingContinuousEDM, ModelSamplingContinuousV]
