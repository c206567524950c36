"""Fixtures for workflow tests: a tmp Loom base with the tiny checkpoint, its LoRA and the fixture images installed."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIX / "tiny-sd15"
CKPT = "tiny-sd15.safetensors"


def _rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (the fixtures' comparison rule)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != golden {b.shape}"
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="session")
def rel_err() -> Any:
    return _rel_err


@pytest.fixture(scope="module")
def loom_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("loom")
    ck = base / "models" / "checkpoints"
    ck.mkdir(parents=True)
    shutil.copyfile(TINY / CKPT, ck / CKPT)
    loras = base / "models" / "loras"
    loras.mkdir()
    shutil.copyfile(FIX / "families" / "tiny-sd15-lora.safetensors", loras / "tiny-sd15-lora.safetensors")
    inp = base / "input"
    inp.mkdir()
    for name in ("init_128x64.png", "mask_128x64.png"):
        shutil.copyfile(TINY / name, inp / name)
    return base


@pytest.fixture(scope="module")
def runtime(loom_base: Path) -> Iterator[Any]:
    import torch

    from app.runner import build_runtime

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rt = build_runtime(loom_base, cpu=True)
    yield rt
    rt.close()
