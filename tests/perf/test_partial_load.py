"""Partial offload: layers beyond the byte budget stream in per call; outputs unchanged; hooks removable."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.partial_load import partial_load


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.Flatten(), nn.Linear(32 * 8 * 8, 16))


def _bytes(m: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in m.parameters())


def test_budget_decides_which_layers_stream_and_output_is_unchanged() -> None:
    net = _net().eval()
    x = torch.randn(2, 4, 8, 8)
    want = net(x)
    cpu = torch.device("cpu")
    budget = _bytes(net[0]) + _bytes(net[1]) + 10  # room for the first conv (+ the norm, always resident)
    placed = partial_load(net, cpu, cpu, budget)
    assert placed.streamed == [net[3], net[5]]
    assert placed.resident_bytes == _bytes(net[0]) + _bytes(net[1])
    assert len(placed.hooks) == 4
    torch.testing.assert_close(net(x), want, rtol=0, atol=0)
    placed.remove()
    assert not placed.hooks and not net[3]._forward_pre_hooks and not net[5]._forward_hooks


def test_everything_resident_when_it_fits() -> None:
    net = _net()
    cpu = torch.device("cpu")
    placed = partial_load(net, cpu, cpu, 1 << 30)
    assert placed.streamed == [] and placed.resident_bytes == _bytes(net)


@pytest.mark.gpu
def test_streamed_layers_visit_the_gpu_only_during_their_call() -> None:
    net = _net().eval()
    x = torch.randn(2, 4, 8, 8)
    want = net(x)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    placed = partial_load(net, cuda, cpu, _bytes(net[0]) + _bytes(net[1]) + 10)
    assert net[0].weight.device.type == "cuda" and net[3].weight.device.type == "cpu"
    out = net(x.to(cuda))
    torch.testing.assert_close(out.cpu(), want, rtol=1e-4, atol=1e-5)
    assert net[3].weight.device.type == "cpu" and net[5].weight.device.type == "cpu"
    placed.remove()
