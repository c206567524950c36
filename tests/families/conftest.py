"""A tmp ComfyUI models/ tree holding the family fixtures (symlinks) and the SD1.5 split files, plus a runtime."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FAM = FIX / "families"
SD15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"

LINKS = {
    "checkpoints/tiny-sd15.safetensors": SD15,
    "checkpoints/tiny-sd21v.safetensors": FAM / "tiny-sd21v.safetensors",
    "checkpoints/tiny-sdxl.safetensors": FAM / "tiny-sdxl.safetensors",
    "checkpoints/tiny-sdxl-refiner.safetensors": FAM / "tiny-sdxl-refiner.safetensors",
    "loras/tiny-sd15-lora.safetensors": FAM / "tiny-sd15-lora.safetensors",
    "loras/tiny-sdxl-lora.safetensors": FAM / "tiny-sdxl-lora.safetensors",
    "embeddings/tiny-sd15-ti.safetensors": FAM / "tiny-sd15-ti.safetensors",
}


def split_sd15(models: Path) -> None:
    """tiny-sd15 split into UNet / CLIP / VAE files as the README describes (prefixes removed, metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    full = load_file(str(SD15))
    with safe_open(str(SD15), "pt") as f:
        meta = f.metadata()
    parts = (("diffusion_models/tiny-sd15-unet.safetensors", "model.diffusion_model."),
             ("text_encoders/tiny-sd15-clip.safetensors", "cond_stage_model.transformer."),
             ("vae/tiny-sd15-vae.safetensors", "first_stage_model."))
    for rel, prefix in parts:
        target = models / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        sd = {k[len(prefix):]: v.contiguous() for k, v in full.items() if k.startswith(prefix)}
        save_file(sd, str(target), metadata=meta)


@pytest.fixture(scope="session")
def models_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("families")
    for rel, src in LINKS.items():
        target = base / "models" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, target)
    split_sd15(base / "models")
    return base


@pytest.fixture(scope="session")
def runtime(models_base: Path) -> Iterator[Any]:
    import torch

    from app.runner import build_runtime

    torch.set_num_threads(1)
    rt = build_runtime(models_base, cpu=True)
    yield rt
    rt.close()


def _rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (the fixtures' comparison rule)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _run_graph(rt: Any, graph: dict[str, Any], prompt_id: str = "p") -> Any:
    """Validate (with the built-in extra checks) and execute a graph; returns the outcome."""
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(rt.registry, graph, extra_checks=builtin_checks(rt.services))
    return PromptExecutor(rt.registry, keep_values=True).execute(valid.prompt, prompt_id, {}, valid.outputs)


@pytest.fixture(scope="session")
def rel() -> Any:
    return _rel_err


@pytest.fixture(scope="session")
def run(runtime: Any) -> Any:
    """run(graph, prompt_id) -> ExecutionOutcome through the real nodes and the executor."""
    return lambda graph, prompt_id="p": _run_graph(runtime, graph, prompt_id)
