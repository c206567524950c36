"""ModelManager budgets: LRU eviction of cached files over a RAM budget, VRAM budget offload on a GPU."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.device import DevicePolicy
from engine.model_management import ManagedModel, ModelManager

MB = 1024**2


class Loader:
    """Builds a registered 1 MB (float32) network per file name and counts builds."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self.builds: list[str] = []
        self.entries: dict[str, ManagedModel] = {}

    def get(self, name: str) -> nn.Module:
        def build() -> nn.Module:
            self.builds.append(name)
            module = nn.Linear(512, 512, bias=False)  # 1 MB of float32 weights
            self.entries[name] = self.manager.register(module, name, "unet")
            return module

        return self.manager.cached(("file", name), build)


def test_least_recently_used_file_is_dropped_beyond_the_ram_budget() -> None:
    manager = ModelManager(DevicePolicy.cpu(), ram_budget_bytes=int(2.5 * MB))
    loader = Loader(manager)
    a = loader.get("a")
    loader.get("b")
    assert loader.get("a") is a  # a is now more recently used than b
    loader.get("c")
    assert [k[1] for k in manager.cached_keys()] == ["a", "c"]
    assert manager.cached_bytes() == 2 * MB
    assert [m["name"] for m in manager.loaded_models()] == ["a", "c"]
    assert loader.builds == ["a", "b", "c"]  # a was never loaded twice
    loader.get("b")
    assert loader.builds == ["a", "b", "c", "b"]  # b had been evicted, so it loads again


def test_running_a_model_counts_as_use() -> None:
    manager = ModelManager(DevicePolicy.cpu(), ram_budget_bytes=int(2.5 * MB))
    loader = Loader(manager)
    loader.get("a")
    loader.get("b")
    manager.load(loader.entries["a"])  # a handle ran network a: b becomes least recently used
    loader.get("c")
    assert [k[1] for k in manager.cached_keys()] == ["a", "c"]


def test_the_file_just_loaded_stays_even_when_alone_over_budget() -> None:
    manager = ModelManager(DevicePolicy.cpu(), ram_budget_bytes=MB // 2)
    loader = Loader(manager)
    loader.get("a")
    loader.get("b")
    assert [k[1] for k in manager.cached_keys()] == ["b"]


def test_without_a_budget_everything_stays() -> None:
    manager = ModelManager(DevicePolicy.cpu())
    loader = Loader(manager)
    for name in "abcd":
        loader.get(name)
    assert len(manager.cached_keys()) == 4 and manager.cached_bytes() == 4 * MB


@pytest.mark.gpu
def test_vram_budget_offloads_least_recently_used() -> None:
    # float32 weights, so each Linear is 1 MB on the device too (with fp16 all three fit the budget)
    policy = DevicePolicy(torch.device("cuda"), torch.device("cpu"), torch.float32, torch.float32, torch.float32)
    manager = ModelManager(policy, reserve_bytes=0, vram_budget_bytes=int(2.5 * MB))
    entries = [manager.register(nn.Linear(512, 512, bias=False), n, "unet") for n in "abc"]
    manager.load(entries[0])
    manager.load(entries[1])
    manager.load(entries[0])
    manager.load(entries[2])
    assert [e.device().type for e in entries] == ["cuda", "cpu", "cuda"]
