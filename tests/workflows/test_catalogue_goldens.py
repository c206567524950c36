"""Catalogue example cases (made by ComfyUI 0.3.64's own executor, copied into tests/fixtures/catalogue) that use the samplers,
sampler nodes and guiders of this project: each API prompt runs unchanged through the built-in nodes; the
sampled latent matches to 1e-4 relative error and the saved PNG to 2 levels (mean difference <= 0.01
levels). Copies of the prompts, latents and decoded PNGs are in tests/fixtures/catalogue/golden."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "catalogue" / "golden"
TOL = 1e-4
CASES = sorted(p.stem.removeprefix("comfy__") for p in GOLDEN.glob("comfy__*.json"))


def run_graph(runtime: Any, graph: dict[str, Any]) -> Any:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(runtime.registry, graph, extra_checks=builtin_checks(runtime.services))
    outcome = PromptExecutor(runtime.registry, keep_values=True).execute(valid.prompt, "catalogue", {},
                                                                        valid.outputs)
    assert outcome.status == "success", outcome.error
    return outcome


def saved_png(loom_base: Path, outcome: Any, node: str) -> np.ndarray:
    saved = outcome.outputs[node]["images"][0]
    path = loom_base / "output" / saved.get("subfolder", "") / saved["filename"]
    return np.array(Image.open(path))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_catalogue_case_reproduces(runtime: Any, loom_base: Path, rel_err: Any, case: str) -> None:
    meta = json.loads((GOLDEN / f"comfy__{case}.json").read_text())
    outcome = run_graph(runtime, meta["graph"])
    latent = outcome.values["5"][0][0]["samples"].numpy()
    assert rel_err(latent, np.load(GOLDEN / f"comfy__{case}.latent.npy")) <= TOL
    got = saved_png(loom_base, outcome, "7").astype(np.int16)
    want = np.load(GOLDEN / f"comfy__{case}.out7.npy")[0].astype(np.int16)
    diff = np.abs(got - want)
    assert diff.max() <= 2 and diff.mean() <= 0.01, (int(diff.max()), float(diff.mean()))
