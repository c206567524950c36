"""ComfyUI's `comfy.cldm.cldm` for packs: `ControlNet`, the class packs subclass for their own control networks
(SparseCtrl, ControlNet++, CtrLoRA in Advanced-ControlNet). Subclasses can be declared; building one raises:
Loom's ControlNet network (`engine.adapters.networks.ControlNet`) is built from a config Loom detects, not from
ComfyUI's constructor arguments. Loom's CONTROL_NET files load with ControlNetLoader / `comfy.controlnet`."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["ControlNet"]


class ControlNet(torch.nn.Module):
    """Stand-in for ComfyUI's cldm ControlNet: subclassable, not buildable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: comfy.cldm.cldm.ControlNet cannot be built on Loom (its "
                                  f"network is built from a detected config, not ComfyUI's arguments); load "
                                  f"ControlNet files with ControlNetLoader or comfy.controlnet.load_controlnet")
