"""ModelManager.running_together: a UNet and its ControlNet are loaded as a group, and a control loaded per model
call never evicts the UNet. The manager is real; the accelerator is simulated (networks that record where they
are moved to, and a policy whose free memory is a fixed capacity minus what sits on the device), since the test
machines have none."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from engine.device import DevicePolicy
from engine.model_management import ManagedModel, ModelManager

ACCEL = torch.device("mps")  # only a name here: nothing is computed on it


class _Slot:
    """A stand-in parameter: size in bytes and the device it was moved to."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.device = torch.device("cpu")

    def numel(self) -> int:
        return self.size

    def element_size(self) -> int:
        return 1


class FakeNet(nn.Module):
    """A network whose ``to(device)`` records the move instead of copying tensors."""

    def __init__(self, name: str, size: int, moves: list[tuple[str, str]]) -> None:
        super().__init__()
        self.name = name
        self.slot = _Slot(size)
        self.moves = moves

    def parameters(self, recurse: bool = True) -> Iterator[Any]:
        yield self.slot

    def buffers(self, recurse: bool = True) -> Iterator[Any]:
        return iter(())

    def to(self, device: Any, *args: Any, **kwargs: Any) -> FakeNet:  # type: ignore[override]
        device = torch.device(device)
        if device != self.slot.device:
            self.moves.append((self.name, device.type))
            self.slot.device = device
        return self


@dataclass(frozen=True)
class FakeAccelerator(DevicePolicy):
    """A device of ``capacity`` bytes; its free memory is the capacity minus the networks placed on it."""

    capacity: int = 0
    nets: list[FakeNet] = field(default_factory=list)

    def free_memory(self) -> int:
        return self.capacity - sum(n.slot.size for n in self.nets if n.slot.device == ACCEL)


def _setup(capacity: int) -> tuple[ModelManager, dict[str, ManagedModel], list[tuple[str, str]]]:
    moves: list[tuple[str, str]] = []
    nets = {"unet": FakeNet("unet", 60, moves), "vae": FakeNet("vae", 20, moves), "cn": FakeNet("cn", 30, moves)}
    cpu = torch.device("cpu")
    policy = FakeAccelerator(ACCEL, cpu, torch.float32, torch.float32, torch.float32, capacity=capacity,
                             nets=list(nets.values()))
    manager = ModelManager(policy, reserve_bytes=0, lowvram=False)
    entries = {"unet": manager.register(nets["unet"], "unet", "unet"),
               "vae": manager.register(nets["vae"], "vae", "vae"),
               "cn": manager.register(nets["cn"], "cn", "controlnet")}
    manager.load(entries["unet"])  # used first ...
    manager.load(entries["vae"])  # ... then the VAE (an img2img encode): the UNet is the least recently used
    moves.clear()
    return manager, entries, moves


def _steps(manager: ModelManager, entries: dict[str, ManagedModel], n: int = 3) -> None:
    for _ in range(n):  # per model call: the control first, then the UNet (as a sampling run does)
        manager.load(entries["cn"])
        manager.load(entries["unet"])


def test_without_a_group_the_control_evicts_the_unet() -> None:
    manager, entries, moves = _setup(capacity=100)
    _steps(manager, entries)
    assert ("unet", "cpu") in moves  # the baseline the group fixes: the UNet went out and came back


def test_running_together_keeps_the_unet_and_evicts_others() -> None:
    manager, entries, moves = _setup(capacity=100)
    with manager.running_together([entries["unet"], entries["cn"]]):
        _steps(manager, entries)
    assert moves == [("vae", "cpu"), ("cn", "mps")]
    assert entries["unet"].device() == ACCEL and entries["cn"].device() == ACCEL


def test_after_the_run_the_group_is_not_pinned() -> None:
    manager, entries, moves = _setup(capacity=100)
    with manager.running_together([entries["unet"], entries["cn"]]):
        _steps(manager, entries, 1)
    manager.load(entries["vae"])  # now a member of the group (the control, least recently used) may go
    assert moves[-2:] == [("cn", "cpu"), ("vae", "mps")]


def test_vram_budget_counts_the_whole_group() -> None:
    manager, entries, moves = _setup(capacity=1000)
    manager.vram_budget_bytes = 100
    with manager.running_together([entries["unet"], entries["cn"]]):
        _steps(manager, entries)
    assert ("unet", "cpu") not in moves and ("vae", "cpu") in moves
    assert sum(e.size for e in entries.values() if e.device() == ACCEL) <= 100
