"""Patches on weights a custom layer keeps packed (engine.patching): applied to the value an installed unpacker
gives, and refused, naming the weight, when no unpacker knows the layer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.patching import Patchable, add_weight_unpacker


class Packed(torch.Tensor):
    """A weight stored as its values twice over (a stand-in for a quantised block layout)."""

    @property
    def shape(self) -> torch.Size:  # the weight's own shape, as GGUF's GGMLTensor reports it
        return torch.Size((self.size(0), self.size(1) // 2))


class PackedLinear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.cat([weight, weight], dim=1).as_subclass(Packed), requires_grad=False)

    def unpacked(self) -> torch.Tensor:
        return torch.Tensor(self.weight.detach())[:, : self.weight.size(1) // 2].clone()


class Handle(Patchable):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def _module(self) -> nn.Module:
        return self.module


def _net() -> nn.Module:
    net = nn.Sequential(PackedLinear(torch.arange(6.0).view(2, 3)), nn.Linear(3, 2))
    return net


def test_a_packed_weight_no_unpacker_knows_is_refused_naming_it() -> None:
    handle = Handle(_net())
    with pytest.raises(ValueError, match=r"cannot patch 0\.weight .*PackedLinear.*\(2, 6\) stored for a \(2, 3\)"):
        handle.add_patches({"0.weight": torch.ones(2, 3)})
    assert handle.add_patches({"1.weight": torch.ones(2, 3)}) == ["1.weight"]  # ordinary weights still patch


def test_a_packed_weight_is_patched_from_its_unpacked_value() -> None:
    def unpacker(layer: nn.Module, attr: str):
        return layer.unpacked if isinstance(layer, PackedLinear) and attr == "weight" else None

    remove = add_weight_unpacker(unpacker)
    try:
        net = _net()
        handle = Handle(net)
        assert handle.add_patches({"0.weight": torch.ones(2, 3)}, strength_patch=0.5) == ["0.weight"]
        patched = handle._patched_weights(net)
    finally:
        remove()
    assert type(patched["0.weight"]) is torch.Tensor and patched["0.weight"].dtype == torch.float32
    assert torch.equal(patched["0.weight"], torch.arange(6.0).view(2, 3) + 0.5)
    with pytest.raises(ValueError, match="cannot patch"):  # removed again
        Handle(_net()).add_patches({"0.weight": torch.ones(2, 3)})
