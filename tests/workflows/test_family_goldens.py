"""The family golden graphs (LoRA, split loaders, textual inversion, SD2.1-v, SDXL) run unchanged through the
built-in nodes and reproduce ComfyUI's latents and images (rel err <= 1e-4)."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FAM = FIX / "families"
GOLDEN = FAM / "golden"
TOL = 1e-4


@pytest.fixture(scope="module")
def family_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("families")
    sd15 = FIX / "tiny-sd15" / "tiny-sd15.safetensors"
    links = {
        "checkpoints/tiny-sd15.safetensors": sd15,
        "checkpoints/tiny-sd21v.safetensors": FAM / "tiny-sd21v.safetensors",
        "checkpoints/tiny-sdxl.safetensors": FAM / "tiny-sdxl.safetensors",
        "loras/tiny-sd15-lora.safetensors": FAM / "tiny-sd15-lora.safetensors",
        "embeddings/tiny-sd15-ti.safetensors": FAM / "tiny-sd15-ti.safetensors",
        # the split files hold the checkpoint's parts; the split loaders read them out of the full file
        "diffusion_models/tiny-sd15-unet.safetensors": sd15,
        "text_encoders/tiny-sd15-clip.safetensors": sd15,
        "vae/tiny-sd15-vae.safetensors": sd15,
    }
    for rel, src in links.items():
        target = base / "models" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size < 1_000_000:
            shutil.copyfile(src, target)  # small files are copied: embeddings refuse symlinks leaving the folder
        else:
            os.symlink(src, target)
    rt = build_runtime(base, cpu=True)
    yield rt
    rt.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_family_golden_graph(family_runtime: Any, rel_err: Any, name: str) -> None:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    case = json.loads((GOLDEN / f"{name}.json").read_text())
    valid = validate_prompt(family_runtime.registry, case["graph"],
                            extra_checks=builtin_checks(family_runtime.services))
    outcome = PromptExecutor(family_runtime.registry, keep_values=True).execute(valid.prompt, name, {},
                                                                               valid.outputs)
    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"].numpy()
    image = outcome.values[str(case["image_node"])][0][0].numpy()
    assert rel_err(latent, np.load(GOLDEN / f"{name}.latent.npy")) <= TOL
    assert rel_err(image, np.load(GOLDEN / f"{name}.image.npy")) <= TOL
