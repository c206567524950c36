"""Skip-layer guidance for DiT models (SD3.5 / Flux): a third model pass with some transformer blocks skipped.

After CFG, ``x0 += (cond_x0 - cond_x0_skipped) * scale`` while sigma lies in the [end, start] percent window, as
ComfyUI's SkipLayerGuidanceDiT / SkipLayerGuidanceSD3 do (SkipLayerGuidanceDiTSimple instead runs the negative
prediction with the blocks skipped) (an idea after Perturbed-Attention Guidance, Ahn et al.
2024, arXiv:2403.17377). Blocks are skipped through ``transformer_options["patches_replace"]["dit"]``, which the
MMDiT ("double_block" = joint block) and Flux ("double_block", "single_block") networks honour.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from engine.sampling.guider import calc_cond_batch

__all__ = ["parse_layers", "skip_block", "with_skipped_blocks", "skip_layer_post_cfg", "skip_layer_uncond"]


def parse_layers(text: str) -> list[int]:
    """Block indices in a free-form list ("7, 8, 9")."""
    return [int(n) for n in re.findall(r"\d+", text)]


def skip_block(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A block replacement that returns its input unchanged."""
    return args


def with_skipped_blocks(model_options: dict[str, Any], double: list[int], single: list[int]) -> dict[str, Any]:
    """A copy of ``model_options`` whose ``dit`` replacement table skips these blocks (the input is not changed)."""
    transformer = dict(model_options.get("transformer_options") or {})
    replace = {k: dict(v) for k, v in (transformer.get("patches_replace") or {}).items()}
    table = replace.setdefault("dit", {})
    for kind, indices in (("double_block", double), ("single_block", single)):
        for i in indices:
            table[(kind, i)] = skip_block
    transformer["patches_replace"] = replace
    return {**model_options, "transformer_options": transformer}


def skip_layer_post_cfg(model_sampling: Any, double: list[int], single: list[int], scale: float,
                        start_percent: float, end_percent: float, rescaling_scale: float = 0.0
                        ) -> Callable[[dict[str, Any]], torch.Tensor]:
    """The ``sampler_post_cfg_function`` of SkipLayerGuidanceDiT."""
    sigma_start = float(model_sampling.percent_to_sigma(start_percent))
    sigma_end = float(model_sampling.percent_to_sigma(end_percent))

    def post_cfg(args: dict[str, Any]) -> torch.Tensor:
        result: torch.Tensor = args["denoised"]
        s = float(args["sigma"][0])
        if scale <= 0 or not sigma_end <= s <= sigma_start:
            return result
        options = with_skipped_blocks(args["model_options"], double, single)
        cond_x0 = args["cond_denoised"]
        (skipped,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"], options)
        result = result + (cond_x0 - skipped) * scale
        if rescaling_scale != 0:
            factor = cond_x0.std() / result.std()
            result = result * (rescaling_scale * factor + (1 - rescaling_scale))
        return result

    return post_cfg


def skip_layer_uncond(model_sampling: Any, double: list[int], single: list[int], start_percent: float,
                      end_percent: float) -> Callable[[dict[str, Any]], list[torch.Tensor]]:
    """The ``sampler_calc_cond_batch_function`` of SkipLayerGuidanceDiTSimple: inside the window the negative
    prediction comes from the model with the blocks skipped."""
    sigma_start = float(model_sampling.percent_to_sigma(start_percent))
    sigma_end = float(model_sampling.percent_to_sigma(end_percent))

    def calc(args: dict[str, Any]) -> list[torch.Tensor]:
        cond, uncond = args["conds"]
        model, x, sigma, options = args["model"], args["input"], args["sigma"], args["model_options"]
        if uncond is None or not sigma_end <= float(sigma[0]) <= sigma_start:
            return calc_cond_batch(model, args["conds"], x, sigma, options)
        cond_x0, _ = calc_cond_batch(model, [cond, None], x, sigma, options)
        _, uncond_x0 = calc_cond_batch(model, [None, uncond], x, sigma, with_skipped_blocks(options, double, single))
        return [cond_x0, uncond_x0]

    return calc
