"""Custom sampling nodes (ComfyUI `comfy_extras/nodes_custom_sampler.py` names): a sampler, a sigma schedule,
a noise source and a guider as separate values, combined by SamplerCustom / SamplerCustomAdvanced.

The values (SAMPLER, SIGMAS, NOISE, GUIDER) and the sampling run live in `engine.sampling.custom`; these
nodes check inputs, name the node and input in errors, and wire progress and previews like KSampler.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from engine.types import Conditioning, Guider, Latent, NoiseSource, SamplerValue
from nodes._base import BuiltinNode, InputTypes, engine_reports, input_error
from nodes.sampling import SEED_MAX, _callback, sampler_names, scheduler_names

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle
    from engine.sampling.custom import CFGGuide, EmptyNoise, GaussianNoise, SamplerChoice
    from nodes.services import NodeServices

__all__ = ["NODES"]

_CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
_STEPS = ("INT", {"default": 20, "min": 1, "max": 10000})
_SIGMA_MAX = ("FLOAT", {"default": 14.614642, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_SIGMA_MIN = ("FLOAT", {"default": 0.0291675, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_SEED = ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True})


def _sigmas_in(node: str, sigmas: object, name: str = "sigmas") -> torch.Tensor:
    import torch

    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        got = f"shape {tuple(sigmas.shape)}" if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise input_error(node, name, f"expected SIGMAS (a 1-d tensor, e.g. from BasicScheduler), got {got}")
    return sigmas


def _model_in(node: str, model: object, name: str = "model") -> ModelHandle:
    if model is None or not hasattr(model, "model_sampling"):
        raise input_error(node, name, f"expected a MODEL (connect a loader's MODEL output), got "
                                      f"{type(model).__name__}")
    return cast("ModelHandle", model)  # checked above by duck type: packs may pass their own handles


def _latent_in(node: str, latent: object) -> Latent:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise input_error(node, "latent_image", f"expected a LATENT dict, got {type(latent).__name__}")
    return cast(Latent, latent)


# --------------------------------------------------------------------------------------------- samplers
class KSamplerSelect(BuiltinNode):
    """A SAMPLER by name, for SamplerCustom / SamplerCustomAdvanced."""

    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sampler_name": (sampler_names(),)}}

    def get_sampler(self, sampler_name: str) -> tuple[SamplerChoice]:
        from engine.sampling.custom import SamplerChoice
        from engine.sampling.samplers import get_sampler

        try:
            get_sampler(sampler_name)
        except ValueError as exc:
            raise input_error("KSamplerSelect", "sampler_name", str(exc)) from None
        return (SamplerChoice(sampler_name),)


# ------------------------------------------------------------------------------------------- schedulers
class SchedulerNode(BuiltinNode):
    """Base of the nodes that make a SIGMAS schedule (category, output and function name)."""

    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"


class BasicScheduler(SchedulerNode):
    """The model's named schedule; denoise < 1 keeps the last steps + 1 sigmas of a longer one (like KSampler)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "scheduler": (scheduler_names(),), "steps": _STEPS,
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model: ModelHandle, scheduler: str, steps: int, denoise: float) -> tuple[torch.Tensor]:
        import torch

        from engine.sampling.schedulers import calculate_sigmas

        _model_in("BasicScheduler", model)
        if steps < 1:
            raise input_error("BasicScheduler", "steps", f"must be >= 1, got {steps}")
        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.zeros([0], dtype=torch.float32),)
            total = int(steps / denoise)
        try:
            sigmas = calculate_sigmas(model.model_sampling, scheduler, total).cpu()
        except ValueError as exc:
            raise input_error("BasicScheduler", "scheduler", str(exc)) from None
        return (sigmas[-(steps + 1):],)


class KarrasScheduler(SchedulerNode):
    """Karras et al. 2022 rho schedule between sigma_max and sigma_min (trailing 0)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                               "round": False})}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[torch.Tensor]:
        from engine.sampling.schedulers import karras_sigmas

        return (karras_sigmas(steps, sigma_min, sigma_max, rho),)


class ExponentialScheduler(SchedulerNode):
    """Sigmas evenly spaced in log sigma from sigma_max to sigma_min (trailing 0)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float) -> tuple[torch.Tensor]:
        from engine.sampling.schedulers import exponential_sigmas

        return (exponential_sigmas(steps, sigma_min, sigma_max),)


class PolyexponentialScheduler(SchedulerNode):
    """Log sigma following a rho-th power ramp (rho 1 = exponential)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                               "round": False})}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[torch.Tensor]:
        from engine.sampling.custom import polyexponential_sigmas

        return (polyexponential_sigmas(steps, sigma_min, sigma_max, rho),)


class SDTurboScheduler(SchedulerNode):
    """SD-Turbo's few-step schedule: timesteps 999, 899, ..., entered later for denoise < 1."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model: ModelHandle, steps: int, denoise: float) -> tuple[torch.Tensor]:
        from engine.sampling.custom import sd_turbo_sigmas

        return (sd_turbo_sigmas(_model_in("SDTurboScheduler", model).model_sampling, steps, denoise),)


class BetaSamplingScheduler(SchedulerNode):
    """Beta-distribution timestep spacing over the model's schedule (Lee et al. 2024)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        knob = ("FLOAT", {"default": 0.6, "min": 0.0, "max": 50.0, "step": 0.01, "round": False})
        return {"required": {"model": ("MODEL",), "steps": _STEPS, "alpha": knob, "beta": knob}}

    def get_sigmas(self, model: ModelHandle, steps: int, alpha: float, beta: float) -> tuple[torch.Tensor]:
        from engine.sampling.schedulers import beta_sigmas

        return (beta_sigmas(_model_in("BetaSamplingScheduler", model).model_sampling, steps, alpha, beta),)


# ---------------------------------------------------------------------------------------- sigma tools
class SplitSigmas(BuiltinNode):
    """Split a schedule at a step; both halves include the sigma at the split (high pass, then low pass)."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    def get_sigmas(self, sigmas: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from engine.sampling.custom import split_sigmas

        return split_sigmas(_sigmas_in("SplitSigmas", sigmas), step)


class SplitSigmasDenoise(BuiltinNode):
    """Split so the low half runs round(steps * denoise) steps."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sigmas": ("SIGMAS",),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, sigmas: torch.Tensor, denoise: float) -> tuple[torch.Tensor, torch.Tensor]:
        from engine.sampling.custom import split_sigmas_denoise

        return split_sigmas_denoise(_sigmas_in("SplitSigmasDenoise", sigmas), denoise)


class FlipSigmas(BuiltinNode):
    """Reverse a schedule (low to high: unsampling); a leading 0 becomes 1e-4."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sigmas": ("SIGMAS",)}}

    def get_sigmas(self, sigmas: torch.Tensor) -> tuple[torch.Tensor]:
        from engine.sampling.custom import flip_sigmas

        return (flip_sigmas(_sigmas_in("FlipSigmas", sigmas)),)


class SetFirstSigma(BuiltinNode):
    """A copy of the schedule with its first sigma replaced."""

    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "set_first_sigma"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"sigmas": ("SIGMAS",), "sigma": ("FLOAT", {"default": 136.0, "min": 0.0,
                                                                         "max": 20000.0, "step": 0.001,
                                                                         "round": False})}}

    def set_first_sigma(self, sigmas: torch.Tensor, sigma: float) -> tuple[torch.Tensor]:
        sigmas = _sigmas_in("SetFirstSigma", sigmas).clone()
        if sigmas.shape[0] == 0:
            raise input_error("SetFirstSigma", "sigmas", "the schedule is empty; there is no first sigma to set")
        sigmas[0] = sigma
        return (sigmas,)


# ------------------------------------------------------------------------------------------------ noise
class RandomNoise(BuiltinNode):
    """NOISE from a seed: the same initial noise KSampler draws for that seed."""

    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"noise_seed": _SEED}}

    def get_noise(self, noise_seed: int) -> tuple[GaussianNoise]:
        from engine.sampling.custom import GaussianNoise

        return (GaussianNoise(int(noise_seed)),)


class DisableNoise(BuiltinNode):
    """NOISE of zeros: sampling starts from the latent as it is (second pass of a split schedule)."""

    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {}}

    def get_noise(self) -> tuple[EmptyNoise]:
        from engine.sampling.custom import EmptyNoise

        return (EmptyNoise(),)


# ---------------------------------------------------------------------------------------------- guiders
class CFGGuider(BuiltinNode):
    """GUIDER: classifier-free guidance between positive and negative at scale cfg."""

    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": _CFG}}

    def get_guider(self, model: ModelHandle, positive: Conditioning, negative: Conditioning,
                   cfg: float) -> tuple[CFGGuide]:
        from engine.sampling.custom import CFGGuide

        return (CFGGuide(_model_in("CFGGuider", model), positive, negative, float(cfg)),)


class BasicGuider(BuiltinNode):
    """GUIDER: one conditioning, no negative pass (guidance-distilled models)."""

    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def get_guider(self, model: ModelHandle, conditioning: Conditioning) -> tuple[CFGGuide]:
        from engine.sampling.custom import basic_guide

        return (basic_guide(_model_in("BasicGuider", model), conditioning),)


# --------------------------------------------------------------------------------------------- samplers
def _run(node: str, guider: Guider, noise: NoiseSource, sampler: SamplerValue, sigmas: torch.Tensor, latent: Latent,
         seed: int | None, services: NodeServices) -> tuple[Latent, Latent]:
    """Shared body of SamplerCustom(Advanced): (output, denoised_output) LATENT copies."""
    from engine.sampling.custom import resolve_sampler, run_custom
    from engine.sampling.ksampler import fix_empty_latent_channels

    sigmas = _sigmas_in(node, sigmas)
    try:
        resolve_sampler(sampler)
    except (TypeError, ValueError) as exc:
        raise input_error(node, "sampler", str(exc)) from None
    model = guider.model_patcher
    samples = fix_empty_latent_channels(model, latent["samples"])
    latent = {**latent, "samples": samples}
    try:
        initial = noise.generate_noise(latent)
    except (TypeError, ValueError) as exc:
        raise input_error(node, "noise", str(exc)) from None
    if tuple(initial.shape) != tuple(samples.shape):
        raise input_error(node, "noise", f"the noise has shape {tuple(initial.shape)} but the latent has "
                                         f"{tuple(samples.shape)}")
    with engine_reports():
        result = run_custom(guider, initial, samples, sampler, sigmas, noise_mask=latent.get("noise_mask"),
                            callback=_callback(services.preview_method, model, services.paths), seed=seed)
    out = latent.copy()
    out["samples"] = result.samples
    if result.denoised is None:
        return out, out
    denoised = latent.copy()
    denoised["samples"] = result.denoised
    return out, denoised


class SamplerCustom(BuiltinNode):
    """Sample with a SAMPLER over SIGMAS as given: CFG guidance, seeded noise (or none)."""

    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "add_noise": ("BOOLEAN", {"default": True}),
            "noise_seed": _SEED,
            "cfg": _CFG,
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "sampler": ("SAMPLER",),
            "sigmas": ("SIGMAS",),
            "latent_image": ("LATENT",),
        }}

    def sample(self, model: ModelHandle, add_noise: bool, noise_seed: int, cfg: float, positive: Conditioning, negative: Conditioning,
               sampler: SamplerValue, sigmas: torch.Tensor, latent_image: Latent) -> tuple[Latent, Latent]:
        from engine.sampling.custom import CFGGuide, EmptyNoise, GaussianNoise

        guider = CFGGuide(_model_in("SamplerCustom", model), positive, negative, float(cfg))
        noise = GaussianNoise(int(noise_seed)) if add_noise else EmptyNoise()
        # the seed also drives stochastic samplers' per-step noise, with or without initial noise
        return _run("SamplerCustom", guider, noise, sampler, sigmas, _latent_in("SamplerCustom", latent_image),
                    int(noise_seed), self._services())


class SamplerCustomAdvanced(BuiltinNode):
    """Sample with separate NOISE, GUIDER, SAMPLER and SIGMAS values."""

    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, noise: NoiseSource, guider: Guider, sampler: SamplerValue, sigmas: torch.Tensor,
               latent_image: Latent) -> tuple[Latent, Latent]:
        node = "SamplerCustomAdvanced"
        if not callable(getattr(noise, "generate_noise", None)):
            raise input_error(node, "noise", f"expected a NOISE (e.g. from RandomNoise), got {type(noise).__name__}")
        if not callable(getattr(guider, "sample", None)) or not hasattr(guider, "model_patcher"):
            raise input_error(node, "guider", f"expected a GUIDER (e.g. from CFGGuider), got "
                                              f"{type(guider).__name__}")
        return _run(node, guider, noise, sampler, sigmas, _latent_in(node, latent_image),
                    getattr(noise, "seed", None), self._services())


NODES: list[type] = [
    SamplerCustom, BasicScheduler, KarrasScheduler, ExponentialScheduler, PolyexponentialScheduler,
    SDTurboScheduler, BetaSamplingScheduler, KSamplerSelect, SplitSigmas, SplitSigmasDenoise, FlipSigmas,
    SetFirstSigma, CFGGuider, BasicGuider, DisableNoise, RandomNoise, SamplerCustomAdvanced,
]
