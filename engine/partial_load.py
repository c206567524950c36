"""Partial offload ("lowvram"): a network larger than the free device memory runs with part of it resident.

Linear and Conv2d layers are put on the compute device in module order until a byte budget is used; the
remaining ones stay on the offload device and are moved in for their own forward call and back out after
it. Every other tensor (norms, embeddings, bare parameters read by a parent's forward) is small and always
resident. Device-agnostic: on the CPU (compute device = offload device) the moves are no-ops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["PartialLoad", "partial_load"]

_STREAMABLE = (nn.Linear, nn.Conv2d)


def _own_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size()
               for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)])


def _move_own(module: nn.Module, device: torch.device) -> None:
    """Move the module's own parameters and buffers (not its children's) to ``device``."""
    for p in module.parameters(recurse=False):
        if p.device != device:
            p.data = p.data.to(device, non_blocking=True)
    for name, b in list(module.named_buffers(recurse=False)):
        if b.device != device:
            module._buffers[name] = b.to(device, non_blocking=True)


@dataclass
class PartialLoad:
    """The result of ``partial_load``: bytes resident on the device, streamed layers and their hooks."""

    resident_bytes: int = 0
    streamed: list[nn.Module] = field(default_factory=list)
    hooks: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        """Drop the streaming hooks (call before moving the whole network)."""
        for h in self.hooks:
            h.remove()
        self.hooks.clear()
        self.streamed.clear()


def partial_load(module: nn.Module, device: torch.device, offload: torch.device, budget_bytes: int) -> PartialLoad:
    """Place ``module`` so that at most about ``budget_bytes`` of its Linear/Conv2d weights are resident."""
    result = PartialLoad()
    streamable = [m for m in module.modules() if isinstance(m, _STREAMABLE)]
    stream_ids = set()
    used = sum(_own_bytes(m) for m in module.modules() if not isinstance(m, _STREAMABLE))
    for m in streamable:
        size = _own_bytes(m)
        if used + size <= budget_bytes:
            used += size
        else:
            stream_ids.add(id(m))
    for sub in module.modules():
        if id(sub) in stream_ids:
            _move_own(sub, offload)
            result.streamed.append(sub)
            result.hooks.append(sub.register_forward_pre_hook(lambda mod, args: _move_own(mod, device)))
            result.hooks.append(sub.register_forward_hook(lambda mod, args, out: _move_own(mod, offload)))
        else:
            _move_own(sub, device)
    result.resident_bytes = used
    return result
