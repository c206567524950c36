"""ComfyUI's `comfy.controlnet` for packs: `load_controlnet(path)` -> Loom's CONTROL_NET handle
(engine.adapters: ControlNet or T2I-Adapter, the object the ControlNetApply nodes take), the class names packs
test with `isinstance` (ControlBase, ControlNet, T2IAdapter, ControlLora), and `broadcast_image_to`.

The classes answer `isinstance` from the handle's kind and cannot be instantiated: Loom builds control
networks from files with `load_controlnet`. Loom has no Control-LoRA loader, so nothing is a `ControlLora`.
"""
from __future__ import annotations

from typing import Any

import torch

from app.compat._environment import handles_for
from app.compat._family_types import predicate_type
from engine.adapters.control import ControlHandle, broadcast_rows

__all__ = ["ControlBase", "ControlNet", "ControlLora", "T2IAdapter", "broadcast_image_to", "load_controlnet",
           "load_t2i_adapter"]

_loom = handles_for(__name__)  # this Loom instance's objects

ControlBase = predicate_type("ControlBase", __name__, lambda obj: isinstance(obj, ControlHandle),
                             "any CONTROL_NET handle")
ControlNet = predicate_type("ControlNet", __name__, lambda obj: isinstance(obj, ControlHandle) and not obj.is_t2i,
                            "a ControlNet handle")
T2IAdapter = predicate_type("T2IAdapter", __name__, lambda obj: isinstance(obj, ControlHandle) and obj.is_t2i,
                            "a T2I-Adapter handle")
ControlLora = predicate_type("ControlLora", __name__, lambda obj: False, "nothing: Loom loads no Control-LoRA")


def load_controlnet(ckpt_path: str, model: Any = None, model_options: dict[str, Any] | None = None) -> ControlHandle:
    """The ControlNet / T2I-Adapter of a file (a diff ControlNet needs the MODEL it was trained against)."""
    from comfy.sd import _manager

    from engine.adapters.control_load import load_control

    return load_control(ckpt_path, _manager(), model)


def load_t2i_adapter(t2i_data: Any, model_options: dict[str, Any] | None = None) -> ControlHandle:
    """ComfyUI builds T2I-Adapters from a state dict; Loom loads them from files (`load_controlnet(path)`)."""
    raise NotImplementedError("comfy.controlnet.load_t2i_adapter(state_dict) is not provided by Loom: load the file "
                              "with comfy.controlnet.load_controlnet(path), which detects T2I-Adapters")


def broadcast_image_to(tensor: torch.Tensor, target_batch_size: int, batched_number: int) -> torch.Tensor:
    """A hint batch matched to `target_batch_size` rows made of `batched_number` cond groups (ComfyUI's rule)."""
    return broadcast_rows(tensor, target_batch_size, batched_number)
