"""SaveConditioning -> ConditioningLoader round trip (tensor, list and plain options) and MarigoldV2PostProcess."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from executor.errors import GraphRunError
from executor.testing import run_node


def test_save_and_load_conditioning(registry: Any, services: Any) -> None:
    from safetensors import safe_open

    embedding = torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(0))
    refs = [torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 3, 3)]
    cond = [[embedding, {"pooled_output": torch.arange(8.0)[None], "reference_latents": refs, "guidance": 3.5,
                         "name": "x", "skip": None}]]
    out = run_node(registry.get("SaveConditioning"), conditioning=cond, filename_prefix="cond/test").result[0]
    assert out is cond
    saved = Path(services.paths.output_dir) / "cond" / "test_00001_.safetensors"
    with safe_open(str(saved), framework="pt") as fh:
        assert sorted(fh.keys()) == ["conditioning", "pooled_output", "reference_latents.0", "reference_latents.1"]
        assert json.loads(fh.metadata()["conditioning_options"]) == {"guidance": 3.5, "name": "x"}
    embeddings = Path(services.paths.get_folder_paths("embeddings")[0])
    embeddings.mkdir(parents=True, exist_ok=True)
    shutil.copy(saved, embeddings / "test.safetensors")
    (loaded_embedding, options), = run_node(registry.get("ConditioningLoader"),
                                            conditioning_name="test.safetensors").result[0]
    assert torch.equal(loaded_embedding, embedding)
    assert torch.equal(options["pooled_output"], torch.arange(8.0)[None])
    assert [t.shape for t in options["reference_latents"]] == [(1, 4, 2, 2), (1, 4, 3, 3)]
    assert options["guidance"] == 3.5 and options["name"] == "x" and "skip" not in options
    with pytest.raises(GraphRunError, match="single conditioning"):
        run_node(registry.get("SaveConditioning"), conditioning=cond + cond, filename_prefix="c")
    with pytest.raises(GraphRunError, match="cannot be saved"):
        run_node(registry.get("SaveConditioning"), conditioning=[[embedding, {"hook": object()}]], filename_prefix="c")
    from safetensors.torch import save_file
    save_file({"other": torch.zeros(1)}, str(embeddings / "bad.safetensors"))
    with pytest.raises(GraphRunError, match="no 'conditioning'"):
        run_node(registry.get("ConditioningLoader"), conditioning_name="bad.safetensors")


def test_marigold_post_process(registry: Any) -> None:
    cls = registry.get("MarigoldV2PostProcess")
    depth = torch.tensor([0.2, 0.6, 1.0]).view(1, 1, 3, 1).expand(1, 1, 3, 3)  # far is bright in the prediction
    out = run_node(cls, image=depth, prediction="depth").result[0]
    assert torch.allclose(out[0, 0, :, 0], torch.tensor([1.0, 0.5, 0.0]))  # near bright after
    normals = run_node(cls, image=torch.full((1, 2, 2, 3), 0.75), prediction="normals").result[0]
    assert torch.allclose(normals, torch.full_like(normals, (1 / 3 ** 0.5 + 1) / 2))  # (0.5,0.5,0.5) unit-length
    albedo = run_node(cls, image=torch.tensor([0.0, 0.002, 0.5]).view(1, 1, 1, 3), prediction="albedo").result[0]
    assert torch.allclose(albedo[0, 0, 0], torch.tensor([0.0, 0.002 * 12.92, 1.055 * 0.5 ** (1 / 2.4) - 0.055]))
