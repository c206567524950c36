"""Server test fixtures: a Loom on fake executor nodes, in a tmp base directory, served in-process."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from server_fakes import FakeExecutor, FakeRegistry, InterruptFlag, fake_validate

from app.config import Config
from app.engine_factory import Engine
from app.loom import Loom
from server import create_app

LoomFactory = Callable[..., Loom]


@pytest.fixture
def make_loom(tmp_path: Path) -> LoomFactory:
    made: list[Loom] = []

    def factory(**config_changes: Any) -> Loom:
        cfg = Config(base_directory=tmp_path, custom_node_dirs=(tmp_path / "custom_nodes",)).with_changes(
            **config_changes)
        registry = FakeRegistry()
        loom = Loom(config=cfg, engine=Engine(registry, FakeExecutor(registry)), validate_fn=fake_validate,
                    interrupt_flag=InterruptFlag())
        made.append(loom)
        return loom

    yield factory
    for loom in made:
        loom.close()


@pytest.fixture
def loom(make_loom: LoomFactory) -> Loom:
    return make_loom()


@pytest.fixture
async def client(aiohttp_client: Any, loom: Loom) -> TestClient:
    app = create_app(loom, web_root=None)
    return await aiohttp_client(app)
