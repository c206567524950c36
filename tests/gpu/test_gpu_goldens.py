"""On a CUDA device the golden graphs still reproduce ComfyUI's CPU outputs (loosely: GPU kernels differ).

float32 on the GPU (TF32 convolutions allowed, as in ComfyUI) must land close to the CPU goldens; the
default half-precision policy must stay finite and visibly the same image. Skipped without CUDA.
"""
from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]
TINY = TESTS / "fixtures" / "tiny-sd15"
GOLDEN = TINY / "golden"
CKPT = "tiny-sd15.safetensors"
FP32_TOL = 5e-3
HALF_TOL = 6e-2


def _rel(a: Any, b: Any) -> float:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a64.shape == b64.shape
    return float(np.abs(a64 - b64).max() / max(np.abs(b64).max(), 1e-12))


def _golden_prompt(case: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS / "workflows"))
    from test_goldens import golden_prompt

    return golden_prompt(case)  # type: ignore[no-any-return]


def _runtime(tmp: Path, force_fp32: bool) -> Any:
    from engine.device import DevicePolicy
    from engine.lazy_models import LazyModelManager
    from engine.model_management import ModelManager
    from engine.paths import ModelPaths
    from executor import NodeRegistry, PromptExecutor
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    paths = ModelPaths(tmp)
    paths.ensure_dirs()
    shutil.copyfile(TINY / CKPT, Path(paths.get_folder_paths("checkpoints")[0]) / CKPT)
    for name in ("init_128x64.png", "mask_128x64.png"):
        shutil.copyfile(TINY / name, Path(paths.get_directory_by_type("input") or "") / name)
    policy = DevicePolicy.detect(force_fp32=force_fp32)
    assert policy.device.type == "cuda"
    registry = NodeRegistry()
    services = NodeServices(paths=paths, models=LazyModelManager(manager=ModelManager(policy)))
    register_builtin_nodes(registry, services)
    return registry, PromptExecutor(registry, keep_values=True), services


def _run(rt: Any, case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from executor import validate_prompt

    registry, executor, _ = rt
    valid = validate_prompt(registry, _golden_prompt(case))
    outcome = executor.execute(valid.prompt, uuid.uuid4().hex, {}, valid.outputs)
    assert outcome.status == "success", outcome.error
    latent = outcome.values["3"][0][0]["samples"].float().cpu().numpy()
    image = outcome.values["8"][0][0].float().cpu().numpy()
    return latent, image


CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


@pytest.mark.parametrize("force_fp32", [True, False], ids=["fp32", "half"])
@pytest.mark.parametrize("name", CASES)
def test_golden_on_cuda(tmp_path: Path, name: str, force_fp32: bool) -> None:
    case = json.loads((GOLDEN / f"{name}.json").read_text())
    rt = _runtime(tmp_path, force_fp32)
    try:
        latent, image = _run(rt, case)
    finally:
        rt[2].model_manager().unload_all()
    assert np.isfinite(latent).all() and np.isfinite(image).all()
    tol = FP32_TOL if force_fp32 else HALF_TOL
    lat_err = _rel(latent, np.load(GOLDEN / f"{name}.latent.npy"))
    img_err = _rel(image, np.load(GOLDEN / f"{name}.image.npy"))
    print(f"{name} {'fp32' if force_fp32 else 'half'}: latent rel err {lat_err:.2e}, image {img_err:.2e}")
    assert lat_err <= tol, f"latent rel err {lat_err:.3e} > {tol}"
    assert img_err <= tol, f"image rel err {img_err:.3e} > {tol}"
