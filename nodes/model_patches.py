"""Model-patching nodes: clone the MODEL handle and set a sampler hook on it (ComfyUI names and inputs).

The hooks themselves live in `engine.sampling.guider`; these nodes only choose and parameterise them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from engine.handles import ModelHandle

from nodes._base import BuiltinNode, InputTypes

__all__ = ["RescaleCFG", "DifferentialDiffusion"]


class RescaleCFG(BuiltinNode):
    """Rescale the CFG result's spread to the positive prediction's (Lin et al. 2023), mixed by `multiplier`.

    Parameters:
        model: the MODEL to patch (a clone is returned; the input is untouched).
        multiplier: 0 = plain CFG, 1 = fully rescaled.
    """

    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",),
                             "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def patch(self, model: ModelHandle, multiplier: float) -> tuple[ModelHandle]:
        from engine.sampling.guider import rescale_cfg

        m = model.clone()
        m.set_model_sampler_cfg_function(lambda args: rescale_cfg(args, multiplier))
        return (m,)


class DifferentialDiffusion(BuiltinNode):
    """Soft inpainting: a cell of the noise mask is regenerated once the schedule's progress reaches its value.

    Parameters:
        model: the MODEL to patch (a clone is returned).
        strength: 1 = binary per-step threshold; lower values blend it with the soft mask.
    """

    DISPLAY_NAME = "Differential Diffusion"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",)},
                "optional": {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def apply(self, model: ModelHandle, strength: float = 1.0) -> tuple[ModelHandle]:
        from engine.sampling.guider import differential_diffusion_mask

        def mask_fn(sigma: torch.Tensor, denoise_mask: torch.Tensor, extra_options: dict[str, object]) -> torch.Tensor:
            return differential_diffusion_mask(sigma, denoise_mask, extra_options, strength)

        m = model.clone()
        m.set_model_denoise_mask_function(mask_fn)
        return (m,)


NODES: list[type] = [RescaleCFG, DifferentialDiffusion]
