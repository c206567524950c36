"""The six ComfyUI golden family cases, posted as they are through the real nodes and the executor."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "families" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


def test_all_six_cases_present() -> None:
    assert len(CASES) == 6


@pytest.mark.parametrize("name", CASES)
def test_golden_graph_through_nodes(name: str, run: Any, rel: Any, runtime: Any) -> None:
    from PIL import Image

    case = json.loads((GOLDEN / f"{name}.json").read_text())
    outcome = run(case["graph"], name)
    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"]
    image = outcome.values[str(case["image_node"])][0][0]
    assert rel(latent.numpy(), np.load(GOLDEN / f"{name}.latent.npy")) < 1e-5 * 5
    assert rel(image.numpy(), np.load(GOLDEN / f"{name}.image.npy")) < 1e-4
    saved = outcome.outputs[str(case["save_node"])]["images"][0]
    out_dir = Path(runtime.services.paths.output_dir)
    ours = np.asarray(Image.open(out_dir / saved["subfolder"] / saved["filename"]).convert("RGB"), dtype=np.int16)
    theirs = np.asarray(Image.open(GOLDEN / f"{name}.png").convert("RGB"), dtype=np.int16)
    assert ours.shape == theirs.shape
    assert int(np.abs(ours - theirs).max()) <= 2
