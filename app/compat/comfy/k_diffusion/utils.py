"""ComfyUI's `comfy.k_diffusion.utils` for packs: the tensor helpers k-diffusion samplers use."""
from __future__ import annotations

import torch

from engine.sampling.schedulers import append_zero

__all__ = ["append_dims", "append_zero"]


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """`x` with trailing singleton dimensions until it has `target_dims` dimensions."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]
