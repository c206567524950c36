"""A tmp ComfyUI base holding the adapter fixtures in their model folders (tiny-sd15, tiny-sdxl, input images)
and an in-process runtime that validates (with the built-in checks) and runs graphs."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_helpers import link_models, rel_err, run_graph


@pytest.fixture(scope="session")
def adapters_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return link_models(tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def runtime(adapters_base: Path) -> Iterator[Any]:
    import torch

    from app.runner import build_runtime

    torch.set_num_threads(1)
    rt = build_runtime(adapters_base, cpu=True)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def run(runtime: Any) -> Any:
    """run(graph, prompt_id) -> ExecutionOutcome through the real nodes and the executor."""
    return lambda graph, prompt_id="p": run_graph(runtime, graph, prompt_id)


@pytest.fixture(scope="session")
def rel() -> Any:
    return rel_err
