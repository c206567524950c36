"""Fixtures of the extra-loader tests: the derived catalogue files (catalogue_derive), written once per session."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from catalogue_derive import make_diffusers, make_gligen, make_hypernetwork, make_ip2p  # type: ignore[import-not-found]


@pytest.fixture(scope="session")
def derived(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The derived files, written once per session: ip2p, diffusers (folder), gligen, hypernetwork."""
    out = tmp_path_factory.mktemp("catalogue_derived")
    return {"ip2p": make_ip2p(out), "diffusers": make_diffusers(out), "gligen": make_gligen(out),
            "hypernetwork": make_hypernetwork(out)}


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module (the tiny UNet runs faster than on two contended threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def manager() -> Any:
    from engine.device import DevicePolicy
    from engine.model_management import ModelManager

    return ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))


@pytest.fixture(scope="module")
def registry(derived: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A registry whose models folders hold tiny-sd15 and the derived files (checkpoints, diffusers,
    hypernetworks, gligen)."""
    import os

    from catalogue_derive import SD15  # type: ignore[import-not-found]

    from engine.paths import ModelPaths
    from executor.registry import NodeRegistry
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    paths = ModelPaths(tmp_path_factory.mktemp("loom"))
    paths.ensure_dirs()
    for folder, src in (("checkpoints", SD15), ("checkpoints", derived["ip2p"]),
                        ("diffusion_models", derived["ip2p"]), ("diffusers", derived["diffusers"]),
                        ("hypernetworks", derived["hypernetwork"]), ("gligen", derived["gligen"])):
        os.makedirs(os.path.join(paths.models_dir, folder), exist_ok=True)
        os.symlink(src, os.path.join(paths.models_dir, folder, src.name))
    reg = NodeRegistry()
    register_builtin_nodes(reg, NodeServices(paths=paths))
    return reg

