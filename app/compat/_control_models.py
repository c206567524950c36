"""Loom's control networks with the call signatures ComfyUI's control classes use (`comfy.controlnet`).

ComfyUI's `ControlNet.control_model` is called `control_model(x=, hint=, timesteps=, context=, y=)` and read
for `.dtype`; `T2IAdapter.t2i_model` is called on the hint, read for `.unshuffle_amount` and moved with `.to()` /
`.cpu()`. These adapters give Loom's networks (`engine.adapters.networks`, held by a `ControlHandle`) that
surface; the network stays Loom's: the model manager puts it on the compute device for each call, so `.to()` /
`.cpu()` leave placement to it. `control_model_wrapped` (ComfyUI's ModelPatcher of the control network) is a
`ControlPatcher`: `.model`, `.load_device`, `.clone()`.
"""
from __future__ import annotations

from typing import Any

import torch

from engine.adapters.control import ControlHandle

__all__ = ["ControlPatcher", "LoomControlModel", "LoomT2IModel", "wrap_control_model"]


def _dtype(handle: ControlHandle) -> torch.dtype:
    return next(handle.module.parameters()).dtype


class LoomControlModel:
    """A Loom ControlNet network called as ComfyUI's `cldm.ControlNet`."""

    def __init__(self, handle: ControlHandle) -> None:
        self.handle = handle

    @property
    def dtype(self) -> torch.dtype:
        return _dtype(self.handle)

    def __call__(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                 y: torch.Tensor | None = None, **extra: Any) -> dict[str, list[torch.Tensor | None]]:
        unknown = sorted(k for k, v in extra.items() if v is not None and v != [])
        if unknown:
            raise NotImplementedError(f"ControlNet {self.handle.name}: Loom's ControlNet takes no {unknown} "
                                      f"(union ControlNet types and other extra arguments are not supported)")
        module = self.handle.manager.load(self.handle.entry)
        device = x.device
        out: dict[str, list[torch.Tensor | None]] = module(x, hint.to(device), timesteps.float().to(device),
                                                           context.to(device), y=y)
        return out


class LoomT2IModel:
    """A Loom T2I-Adapter network called as ComfyUI's `t2i_adapter.adapter.Adapter`."""

    def __init__(self, handle: ControlHandle) -> None:
        self.handle = handle

    @property
    def unshuffle_amount(self) -> int:
        return int(self.handle.config.unshuffle)

    def to(self, *args: Any, **kwargs: Any) -> LoomT2IModel:
        """Placement and dtype are the model manager's (the network is shared by every copy)."""
        return self

    def cpu(self) -> LoomT2IModel:
        return self

    def __call__(self, hint: torch.Tensor) -> dict[str, list[torch.Tensor | None]]:
        module = self.handle.manager.load(self.handle.entry)
        with torch.no_grad():
            out: dict[str, list[torch.Tensor | None]] = module(hint.to(self.handle.manager.policy.device,
                                                                       _dtype(self.handle)))
        return out


class ControlPatcher:
    """ComfyUI's `control_model_wrapped` (a ModelPatcher of the control network): `.model`, `.load_device`,
    `.clone()`. Loom's model manager loads Loom's networks; a pack's own network is moved to the device of the
    model call by the control that runs it."""

    def __init__(self, model: Any, load_device: Any) -> None:
        self.model = model
        self.load_device = load_device

    def clone(self) -> ControlPatcher:
        return ControlPatcher(self.model, self.load_device)

    def get_additional_models(self) -> list[Any]:
        return []


def wrap_control_model(control_model: Any, load_device: Any) -> ControlPatcher:
    """`control_model_wrapped` for a ControlNet built on `control_model`."""
    return ControlPatcher(control_model, load_device)
