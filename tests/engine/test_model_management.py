"""ModelManager: file cache, tracking, OOM retry; DevicePolicy detection."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from engine.device import DevicePolicy
from engine.model_management import ModelManager, file_cache_key


def test_cpu_policy_is_float32() -> None:
    p = DevicePolicy.detect(cpu_only=True)
    assert p.device.type == "cpu"
    assert {p.unet_dtype, p.vae_dtype, p.text_dtype} == {torch.float32}
    assert p.total_memory() > 0


def test_cached_builds_once_and_key_follows_mtime(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"x")
    mgr = ModelManager(DevicePolicy.cpu())
    calls = []

    def build() -> object:
        calls.append(1)
        return object()

    a = mgr.cached(file_cache_key("k", f), build)
    b = mgr.cached(file_cache_key("k", f), build)
    assert a is b and len(calls) == 1
    f.write_bytes(b"xy")
    c = mgr.cached(file_cache_key("k", f), build)
    assert c is not a and len(calls) == 2
    mgr.forget_files()
    mgr.cached(file_cache_key("k", f), build)
    assert len(calls) == 3


def test_register_load_and_report() -> None:
    mgr = ModelManager(DevicePolicy.cpu())
    net = nn.Linear(4, 4)
    entry = mgr.register(net, "lin", "unet")
    assert mgr.load(entry) is net
    [info] = mgr.loaded_models()
    assert info == {"name": "lin", "kind": "unet", "size": 4 * 4 * 4 + 4 * 4, "device": "cpu"}
    assert mgr.free_memory(10**12) == 0
    mgr.unload_all()


def test_oom_unloads_and_retries_once() -> None:
    mgr = ModelManager(DevicePolicy.cpu())
    unloads = []
    mgr.unload_all = lambda: unloads.append(1)  # type: ignore[method-assign]
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "ok"

    assert mgr.run_oom_safe(flaky) == "ok" and len(attempts) == 2 and len(unloads) == 1

    def always() -> str:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        mgr.run_oom_safe(always)


@pytest.mark.gpu
def test_cuda_load_and_offload() -> None:
    mgr = ModelManager(DevicePolicy.detect())
    a = mgr.register(nn.Linear(256, 256), "a", "unet")
    b = mgr.register(nn.Linear(256, 256), "b", "vae")
    mgr.load(a)
    mgr.load(b)
    assert a.device().type == "cuda" and b.device().type == "cuda"
    freed = mgr.free_memory(10**15, keep=(b,))  # impossible target: offloads everything but b
    assert freed == a.size and a.device().type == "cpu" and b.device().type == "cuda"
    mgr.unload_all()
    assert b.device().type == "cpu"
