"""ComfyUI's `comfy.sampler_helpers` for packs: the helpers custom samplers call around a sampling run.

`prepare_mask` is Loom's own (`engine.sampling.ksampler.prepare_mask`). Loom's sampler loads whatever the
conditioning needs (control nets, GLIGEN) itself, so `get_additional_models` finds nothing extra to load
and the cleanup functions have nothing to release; they exist so packs written for ComfyUI run unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.sampling.ksampler import prepare_mask

__all__ = ["cleanup_additional_models", "cleanup_models", "convert_cond", "get_additional_models",
           "get_models_from_cond", "prepare_mask", "prepare_sampling"]


def convert_cond(cond: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """CONDITIONING `[[tensor, options], ...]` -> ComfyUI's per-entry dicts with the tensor as `cross_attn`."""
    out = []
    for entry in cond:
        tensor, options = entry[0], entry[1]
        out.append({**options, "cross_attn": tensor})
    return out


def get_models_from_cond(cond: Sequence[dict[str, Any]], model_type: str) -> list[Any]:
    """The `model_type` entries (e.g. "control") of converted conditioning."""
    return [c[model_type] for c in cond if model_type in c]


def get_additional_models(conds: dict[str, Any], dtype: Any) -> tuple[list[Any], int]:
    """`(models to load, inference memory)`: Loom's sampler loads what conds need itself, so `([], 0)`."""
    return [], 0


def cleanup_additional_models(models: Sequence[Any]) -> None:
    """Nothing to release: `get_additional_models` loaded nothing."""


def cleanup_models(conds: dict[str, Any], models: Sequence[Any]) -> None:
    """Nothing to release (see `cleanup_additional_models`)."""


def prepare_sampling(model: Any, noise_shape: Any, conds: dict[str, Any], model_options: Any = None
                     ) -> tuple[Any, dict[str, Any], list[Any]]:
    """`(model, conds, loaded models)`: Loom's MODEL handle is what its sampler takes; it loads on use."""
    return model, conds, []
