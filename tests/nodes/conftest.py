"""Fixtures for the built-in node tests: a tmp Loom base dir, services and a bound registry."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.paths import ModelPaths
from nodes.services import NodeServices


@pytest.fixture()
def paths(tmp_path: Path) -> ModelPaths:
    p = ModelPaths(tmp_path / "loom")
    p.ensure_dirs()
    return p


@pytest.fixture()
def services(paths: ModelPaths) -> NodeServices:
    return NodeServices(paths=paths)


@pytest.fixture()
def registry(services: NodeServices) -> Any:
    from executor.registry import NodeRegistry
    from nodes import register_builtin_nodes

    reg = NodeRegistry()
    register_builtin_nodes(reg, services)
    return reg


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module: the tiny UNet is far faster on one thread than on two contended ones
    (results are compared within the process, so the thread count does not change them)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(fixtures_dir: Path) -> Any:
    """The tiny SD1.5 checkpoint's MODEL handle, fp32 on the CPU."""
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    return load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", manager)[0]
