"""GUIDER nodes with a third conditioning (PerpNegGuider, DualCFGGuider) and ConditioningTimestepsRange
(ComfyUI names, inputs and categories). The guiders are ``engine.sampling.guiders`` values.
"""
from __future__ import annotations

from typing import Any

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.custom_sampling import _model_in

__all__ = ["NODES"]

_CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
_STYLES = ["regular", "nested"]


def _conditioning(node: str, name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise input_error(node, name, f"expected CONDITIONING (a list of [tensor, dict]), got {type(value).__name__}")
    return value


class PerpNegGuider(BuiltinNode):
    """CFG that removes only the part of the negative prompt perpendicular to the positive one (Perp-Neg),
    both measured from the empty prompt's prediction."""

    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "empty_conditioning": ("CONDITIONING",), "cfg": _CFG,
                             "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def get_guider(self, model: Any, positive: Any, negative: Any, empty_conditioning: Any, cfg: float,
                   neg_scale: float) -> tuple[Any]:
        from engine.sampling.guiders import PerpNegGuide

        node = "PerpNegGuider"
        return (PerpNegGuide(_model_in(node, model), _conditioning(node, "positive", positive),
                             _conditioning(node, "negative", negative),
                             _conditioning(node, "empty_conditioning", empty_conditioning), float(cfg),
                             float(neg_scale)),)


class DualCFGGuider(BuiltinNode):
    """Two guidance scales: cond2 against the negative, cond1 against cond2 (added, or nested)."""

    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "cond1": ("CONDITIONING",), "cond2": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "cfg_conds": _CFG, "cfg_cond2_negative": _CFG,
                             "style": (list(_STYLES),)}}

    def get_guider(self, model: Any, cond1: Any, cond2: Any, negative: Any, cfg_conds: float,
                   cfg_cond2_negative: float, style: str) -> tuple[Any]:
        from engine.sampling.guiders import DualCFGGuide

        node = "DualCFGGuider"
        if style not in _STYLES:
            raise input_error(node, "style", f"must be regular or nested, got {style!r}")
        return (DualCFGGuide(_model_in(node, model), _conditioning(node, "cond1", cond1),
                             _conditioning(node, "cond2", cond2), _conditioning(node, "negative", negative),
                             float(cfg_conds), float(cfg_cond2_negative), style == "nested"),)


class ConditioningTimestepsRange(BuiltinNode):
    """A (start, end) fraction of the schedule, plus the ranges before and after it."""

    DISPLAY_NAME = "Timesteps Range"
    CATEGORY = "advanced/hooks"
    EXPERIMENTAL = True
    RETURN_TYPES = ("TIMESTEPS_RANGE", "TIMESTEPS_RANGE", "TIMESTEPS_RANGE")
    RETURN_NAMES = ("TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE")
    FUNCTION = "create_range"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        percent = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {"required": {"start_percent": ("FLOAT", {"default": 0.0, **percent}),
                             "end_percent": ("FLOAT", {"default": 1.0, **percent})}}

    def create_range(self, start_percent: float, end_percent: float) -> tuple[tuple[float, float], ...]:
        start, end = float(start_percent), float(end_percent)
        return ((start, end), (0.0, start), (end, 1.0))


NODES: list[type] = [PerpNegGuider, DualCFGGuider, ConditioningTimestepsRange]
