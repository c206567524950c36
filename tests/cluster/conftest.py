"""Cluster fixtures: one local Ray instance on 127.0.0.1 for the session, a Loom base with the tiny checkpoint."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
REPO = Path(__file__).resolve().parents[2]
# A custom node pack the workers must load themselves (the server never loads it in these tests).
ECHO_PACK = """
import os


class ClusterEcho:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, text):
        return {"ui": {"text": [text, str(os.getpid())]}}


NODE_CLASS_MAPPINGS = {"ClusterEcho": ClusterEcho}
"""


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=temp,
             log_to_driver=False, namespace="loom-tests", object_store_memory=80 * 1024 * 1024,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def loom_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cluster-base")
    ck = base / "models" / "checkpoints"
    ck.mkdir(parents=True)
    shutil.copyfile(FIX / "tiny-sd15.safetensors", ck / "tiny-sd15.safetensors")
    pack = base / "custom_nodes" / "cluster_echo"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(ECHO_PACK)
    return base


@pytest.fixture(scope="session")
def engine(loom_base: Path) -> Any:
    """The Engine on this machine, as build_engine makes it for the server."""
    from app.config import Config
    from app.engine_factory import build_engine

    return build_engine(Config(base_directory=loom_base, cpu=True))


@pytest.fixture(scope="session")
def registry(engine: Any) -> Any:
    """The server side's registry (validation only)."""
    return engine.registry
