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
