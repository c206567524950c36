"""GUIDER values with a third conditioning (ComfyUI's PerpNegGuider and DualCFGGuider), and the
``sampler_cfg_function`` that the PerpNeg model patch installs.

Each runs the same ``ksampler.sample`` path as CFGGuider, on a clone of the model handle whose
``sampler_cfg_function`` evaluates the third conditioning at the current x and sigma and combines the three
x0 predictions; the first two come from the CFG stage as usual (one batched call), the third from one more
call. ``disable_cfg1_optimization`` is set so the negative side is always evaluated. Pre-CFG hooks see the
positive and negative predictions only, and post-CFG hooks run on the combined result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from engine.sampling.conditioning import Cond, resolve_conds
from engine.sampling.custom import sample_custom
from engine.sampling.guidance import perp_neg
from engine.sampling.guider import calc_cond_batch
from engine.sampling.hook_run import bind_hooks
from engine.sampling.ksampler import _add_adm
from engine.types import Conditioning, ProgressCallback

__all__ = ["DualCFGGuide", "PerpNegGuide", "ThirdCondPrediction", "dual_cfg_function", "perp_neg_cfg_function"]


class ThirdCondPrediction:
    """x0 of an extra conditioning at the CFG stage's x and sigma (resolved per latent shape, ADM added)."""

    def __init__(self, conditioning: Conditioning, prompt_type: str, label: str) -> None:
        self.conditioning = conditioning
        self.prompt_type = prompt_type
        self.label = label
        self._resolved: dict[tuple[tuple[int, ...], str], list[Cond]] = {}
        self._last_sigma = math.inf

    def __call__(self, model: Any, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The weighted x0 prediction of the conditioning (areas, masks and strengths as for CFG)."""
        (pred,) = calc_cond_batch(model, [self.resolve(model, x, sigma)], x, sigma)
        return pred

    def resolve(self, model: Any, x: torch.Tensor, sigma: torch.Tensor) -> list[Cond]:
        """The conditioning's conds for ``x`` at ``sigma`` (cached per latent shape; hooks bound per run)."""
        in_ch = getattr(model, "in_channels", None)
        if isinstance(in_ch, int) and in_ch > x.shape[1]:
            raise ValueError(f"{self.label}: models with extra input channels (inpainting, InstructPix2Pix) are "
                             "not supported with a third conditioning")
        key = (tuple(x.shape), str(x.device))
        conds = self._resolved.get(key)
        if conds is None:
            conds = resolve_conds(self.conditioning, x.shape, model.model_sampling, x.device, self.label)
            _add_adm(model, conds, x.shape, self.prompt_type)
            self._resolved = {key: conds}
            self._last_sigma = math.inf
        if float(sigma[0]) > self._last_sigma or math.isinf(self._last_sigma):
            # hooks on this conditioning: a new run starts (the sigma rose), whose first sigma is its largest
            bind_hooks([conds], model.model_sampling, sigma)
        self._last_sigma = float(sigma[0])
        return conds


def perp_neg_cfg_function(empty: ThirdCondPrediction, neg_scale: float) -> Any:
    """PerpNeg's ``sampler_cfg_function``: Perp-Neg of the positive and negative against ``empty``."""

    def cfg_function(args: dict[str, Any]) -> torch.Tensor:
        x: torch.Tensor = args["input"]
        nocond = empty(args["model"], x, args["sigma"])
        return x - perp_neg(args["cond_denoised"], args["uncond_denoised"], nocond, neg_scale, args["cond_scale"])

    return cfg_function


def dual_cfg_function(middle: ThirdCondPrediction, cfg_conds: float, cfg_cond2_negative: float,
                      nested: bool) -> Any:
    """DualCFGGuider's ``sampler_cfg_function`` over positive = cond1, negative and ``middle`` = cond2."""

    def cfg_function(args: dict[str, Any]) -> torch.Tensor:
        x: torch.Tensor = args["input"]
        pos: torch.Tensor = args["cond_denoised"]
        neg: torch.Tensor = args["uncond_denoised"]
        mid = middle(args["model"], x, args["sigma"])
        if nested:
            text = mid + (pos - mid) * cfg_conds
            return x - (neg + cfg_cond2_negative * (text - neg))
        return x - ((neg + (mid - neg) * cfg_cond2_negative) + (pos - mid) * cfg_conds)

    return cfg_function


def _patched(model: Any, cfg_function: Any) -> Any:
    clone = model.clone()
    clone.set_model_sampler_cfg_function(cfg_function, disable_cfg1_optimization=True)
    return clone


@dataclass(frozen=True, eq=False)  # identity: conditioning holds tensors
class PerpNegGuide:
    """PerpNegGuider: CFG at ``cfg`` with the negative's component along the positive direction kept
    (Perp-Neg), both measured from the empty prompt's prediction."""

    model: Any
    positive: Conditioning
    negative: Conditioning
    empty: Conditioning
    cfg: float
    neg_scale: float

    @property
    def model_patcher(self) -> Any:
        """ComfyUI's name for the guider's model handle."""
        return self.model

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any, sigmas: torch.Tensor,
               denoise_mask: torch.Tensor | None = None, callback: ProgressCallback | None = None,
               disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
        """Raw latent in, raw latent out (CPU), over ``sigmas`` as given."""
        empty = ThirdCondPrediction(self.empty, "negative", "empty_conditioning")
        model = _patched(self.model, perp_neg_cfg_function(empty, self.neg_scale))
        return sample_custom(model, noise, self.cfg, sampler, sigmas, self.positive, self.negative, latent_image,
                             noise_mask=denoise_mask, callback=callback, seed=seed)


@dataclass(frozen=True, eq=False)
class DualCFGGuide:
    """DualCFGGuider: two guidance scales over negative -> cond2 -> cond1.

    regular: neg + cfg_cond2_negative (cond2 - neg) + cfg_conds (cond1 - cond2);
    nested: neg + cfg_cond2_negative (cond2 + cfg_conds (cond1 - cond2) - neg).
    """

    model: Any
    cond1: Conditioning
    cond2: Conditioning
    negative: Conditioning
    cfg_conds: float
    cfg_cond2_negative: float
    nested: bool = False

    @property
    def model_patcher(self) -> Any:
        """ComfyUI's name for the guider's model handle."""
        return self.model

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any, sigmas: torch.Tensor,
               denoise_mask: torch.Tensor | None = None, callback: ProgressCallback | None = None,
               disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
        """Raw latent in, raw latent out (CPU), over ``sigmas`` as given."""
        middle = ThirdCondPrediction(self.cond2, "negative", "cond2")
        cfg_function = dual_cfg_function(middle, self.cfg_conds, self.cfg_cond2_negative, self.nested)
        model = _patched(self.model, cfg_function)
        return sample_custom(model, noise, self.cfg_conds, sampler, sigmas, self.cond1, self.negative,
                             latent_image, noise_mask=denoise_mask, callback=callback, seed=seed)
