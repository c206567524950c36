"""UNETLoader's weight_dtype (the per-prompt precision, ComfyUI's) reaches the loaded UNet, over --bf16-unet."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from app.config import parse_args
from app.engine_factory import precision_flags
from engine.lazy_models import LazyModelManager
from nodes.services import NodeServices


@pytest.mark.parametrize(("argv", "weight_dtype", "matrices"), [
    ((), "default", {torch.float32}),
    ((), "fp8_e5m2", {torch.float8_e5m2}),
    (("--bf16-unet",), "default", {torch.bfloat16}),
    (("--bf16-unet",), "fp8_e4m3fn", {torch.float8_e4m3fn}),
])
def test_unet_loader_weight_dtype(services: NodeServices, registry: Any, fixtures_dir: Path,
                                  argv: tuple[str, ...], weight_dtype: str, matrices: set[torch.dtype]) -> None:
    folder = Path(services.paths.get_folder_paths("diffusion_models")[0])
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", folder / "tiny.safetensors")
    services.models = LazyModelManager(cpu_only=True, flags=precision_flags(parse_args(list(argv))))
    (model,) = registry.get("UNETLoader")().load_unet("tiny.safetensors", weight_dtype)
    assert {p.dtype for p in model.diffusion_model.parameters() if p.ndim >= 2} == matrices
    assert model.dtype == torch.float32  # the CPU computes in fp32 whatever the weights are stored in
    out = model.apply_model(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), torch.randn(1, 77, 32))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
