"""The SD3.5 / Flux example workflows in workflows/families run through the real nodes with the tiny fixture
files substituted for the real file names (at 128x128, 2 steps)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows" / "families"
TINY = {"flux1-dev.safetensors": "tiny-flux1-dev.safetensors",
        "flux1-schnell.safetensors": "tiny-flux1-schnell.safetensors",
        "clip_l.safetensors": "tiny-clip_l.safetensors", "clip_g.safetensors": "tiny-clip_g.safetensors",
        "t5xxl_fp16.safetensors": "tiny-t5xxl_fp16.safetensors", "ae.safetensors": "tiny-flux-ae.safetensors",
        "sd3.5_medium.safetensors": "tiny-sd35m.safetensors"}


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.json") if not p.name.endswith(".ui.json")))
def test_family_workflow_runs_on_tiny_files(name: str, run2: Any) -> None:
    graph = json.loads((WORKFLOWS / name).read_text())
    for node in graph.values():
        inputs = node["inputs"]
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value in TINY:
                inputs[key] = TINY[value]
            if key in ("width", "height") and node["class_type"] != "ModelSamplingFlux":
                inputs[key] = 128
            if key == "steps":
                inputs[key] = 2
    out = run2(graph, name)
    assert out.status == "success", out.error
    assert any(v.get("images") for v in out.outputs.values())
