"""ComfyUI's `Guider_PerpNeg` and `perp_neg` (served as names of `comfy_extras.nodes_perpneg`), for packs that build
or subclass the guider (Inspire's scheduled PerpNeg guider overrides `set_cfg` / `predict_noise`).

`Guider_PerpNeg` is a `comfy.samplers.CFGGuider` whose `predict_noise` combines the positive, negative and empty
prompt predictions of one batched call with Perp-Neg (`engine.sampling.guidance.perp_neg`), running the model's pre-
and post-CFG hooks as ComfyUI's does. Its empty prompt is one of the guider's conds, resolved by `CFGGuider` for each
prediction (`self.conds["empty_negative_prompt"]`). Loom's own PerpNegGuider node is
`engine.sampling.guiders.PerpNegGuide`, which gives the same result.
"""
from __future__ import annotations

import math
from typing import Any

import comfy.samplers
import node_helpers


def perp_neg(x: Any, noise_pred_pos: Any, noise_pred_neg: Any, noise_pred_nocond: Any, neg_scale: float,
             cond_scale: float) -> Any:
    """Perp-Neg of three x0 predictions (ComfyUI's signature; `x` is unused, as there)."""
    from engine.sampling.guidance import perp_neg as engine_perp_neg

    return engine_perp_neg(noise_pred_pos, noise_pred_neg, noise_pred_nocond, neg_scale, cond_scale)


class Guider_PerpNeg(comfy.samplers.CFGGuider):  # type: ignore[misc]  # noqa: N801 (ComfyUI's name; a shim base)
    """A GUIDER running Perp-Neg at `cfg` / `neg_scale` over positive, negative and an empty prompt."""

    def set_conds(self, positive: Any, negative: Any, empty_negative_prompt: Any) -> None:
        empty = node_helpers.conditioning_set_values(empty_negative_prompt, {"prompt_type": "negative"})
        self.inner_set_conds({"positive": positive, "empty_negative_prompt": empty, "negative": negative})

    def set_cfg(self, cfg: float, neg_scale: float) -> None:
        self.cfg = cfg
        self.neg_scale = neg_scale

    def predict_noise(self, x: Any, timestep: Any, model_options: Any = None, seed: int | None = None) -> Any:
        """The Perp-Neg guided x0 at `x`, `timestep` (sigma)."""
        options = model_options if model_options is not None else {}
        positive = self.conds.get("positive")
        negative = self.conds.get("negative")
        empty = self.conds.get("empty_negative_prompt")
        if not options.get("disable_cfg1_optimization", False) and math.isclose(self.neg_scale, 0.0):
            negative = None  # its perpendicular part counts 0 times
            if math.isclose(self.cfg, 1.0):
                empty = None  # the result is the positive prediction
        conds = [positive, negative, empty]
        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, options)
        for pre in options.get("sampler_pre_cfg_function", ()):
            out = pre({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep, "input": x,
                       "sigma": timestep, "model": self.inner_model, "model_options": options})
        pos_pred, neg_pred, empty_pred = out
        result = perp_neg(x, pos_pred, neg_pred, empty_pred, self.neg_scale, self.cfg)
        for post in options.get("sampler_post_cfg_function", ()):
            result = post({"denoised": result, "cond": positive, "uncond": negative, "cond_scale": self.cfg,
                           "model": self.inner_model, "uncond_denoised": neg_pred, "cond_denoised": pos_pred,
                           "sigma": timestep, "model_options": options, "input": x, "empty_cond": empty,
                           "empty_cond_denoised": empty_pred})
        return result
