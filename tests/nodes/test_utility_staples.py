"""SaveText, CustomCombo, SeedNode, ComfyNumberConvert, ColorToRGBInt and LatentCutToBatch through the executor."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from executor.errors import GraphRunError, PromptValidationError
from executor.testing import run_graph


def _text(value: str) -> dict[str, Any]:
    return {"class_type": "PrimitiveString", "inputs": {"value": value}}


def test_save_text_formats_and_ui(registry: Any, services: Any) -> None:
    graph: dict[str, dict[str, Any]] = {"1": _text('{"b": [1, 2], "a": "é"}'),
             "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "notes/run",
                                                        "format": "json"}}}
    run = run_graph(registry, graph)
    assert run.ui["2"] == {"text": ['{"b": [1, 2], "a": "é"}'],
                           "files": [{"filename": "run_00001.json", "subfolder": "notes", "type": "output"}]}
    assert run.value("2") == '{"b": [1, 2], "a": "é"}'
    folder = Path(services.paths.output_dir) / "notes"
    assert (folder / "run_00001.json").read_text(encoding="utf-8") == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "é"\n}'
    graph["1"] = _text("not json {")
    run_graph(registry, graph)
    assert (folder / "run_00002.json").read_text(encoding="utf-8") == "not json {"  # the counter moved on
    graph["2"]["inputs"]["format"] = "md"
    graph["1"] = _text("# title")
    run_graph(registry, graph)
    assert (folder / "run_00003.md").read_text(encoding="utf-8") == "# title"
    graph["2"]["inputs"]["format"] = "pdf"
    with pytest.raises(PromptValidationError, match="format"):
        run_graph(registry, graph)
    graph["2"]["inputs"].update(format="txt", filename_prefix="../outside")
    with pytest.raises(GraphRunError, match="filename_prefix"):
        run_graph(registry, graph)


def test_custom_combo_accepts_editor_options(registry: Any) -> None:
    graph: dict[str, dict[str, Any]] = {"1": {"class_type": "CustomCombo", "inputs": {"choice": "Turbo", "index": 2, "option0": "Quality",
                                                           "option1": "Default", "option2": "Turbo"}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
             "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}
    run = run_graph(registry, graph)
    assert run.value("1", 0) == "Turbo" and run.value("1", 1) == 2
    del graph["1"]["inputs"]["index"]
    assert run_graph(registry, graph).value("1", 1) == 0


def test_seed_and_number_convert(registry: Any) -> None:
    graph: dict[str, dict[str, Any]] = {
        "1": {"class_type": "SeedNode", "inputs": {"seed": 2**40 + 3}},
        "2": {"class_type": "ComfyNumberConvert", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 1]}}}
    run = run_graph(registry, graph)
    assert run.value("2", 0) == float(2**40 + 3) and run.value("2", 1) == 2**40 + 3
    graph["1"]["inputs"]["seed"] = -1
    with pytest.raises(PromptValidationError, match="seed"):
        run_graph(registry, graph)
    from nodes.utility_staples import to_numbers
    assert to_numbers(" 12 ") == (12.0, 12) and to_numbers("-2.75") == (-2.75, -2) and to_numbers(True) == (1.0, 1)
    assert to_numbers("1e3") == (1000.0, 1000) and to_numbers(3.9) == (3.9, 3)
    graph["5"] = _text("twelve")
    graph["2"]["inputs"]["value"] = ["5", 0]
    with pytest.raises(GraphRunError, match="value.*'twelve'"):
        run_graph(registry, graph)
    for bad in ("", "inf", "nan"):
        with pytest.raises(ValueError):
            to_numbers(bad)


def test_color_to_rgb_int(registry: Any) -> None:
    graph: dict[str, dict[str, Any]] = {"1": {"class_type": "ColorToRGBInt", "inputs": {"color": "#0a9299"}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    run = run_graph(registry, graph)
    assert run.value("1", 0) == 0x0A9299 and run.value("1", 1) == "#0a9299" and run.value("1", 2) == 1.0
    graph["1"]["inputs"]["color"] = "#ff000080"
    run = run_graph(registry, graph)
    assert run.value("1", 0) == 0xFF0000 and run.value("1", 1) == "#ff0000"
    assert run.value("1", 2) == pytest.approx(128 / 255)
    for bad in ("ff0000", "#ff00", "#gg0000"):
        graph["1"]["inputs"]["color"] = bad
        with pytest.raises(GraphRunError, match="#RRGGBB"):
            run_graph(registry, graph)


def _cut(registry: Any, samples: torch.Tensor, dim: str, size: int) -> Any:
    from executor.testing import run_node

    cls = registry.get("LatentCutToBatch")
    return run_node(cls, samples={"samples": samples, "batch_index": [0]}, dim=dim, slice_size=size).result[0]


def test_latent_cut_to_batch(registry: Any) -> None:
    video = torch.arange(2 * 4 * 7 * 3 * 5, dtype=torch.float32).reshape(2, 4, 7, 3, 5)  # B, C, T, H, W
    out = _cut(registry, video, "t", 3)
    assert out["samples"].shape == (4, 4, 3, 3, 5) and out["batch_index"] == [0]
    # batch b, slice k holds frames 3k..3k+2 of input batch b (the 7th frame is dropped)
    assert torch.equal(out["samples"][1], video[0, :, 3:6]) and torch.equal(out["samples"][2], video[1, :, 0:3])
    wide = _cut(registry, video, "x", 10)  # larger than the axis: one slice of all of it
    assert torch.equal(wide["samples"], video)
    image = torch.rand(1, 4, 8, 6)
    rows = _cut(registry, image, "y", 2)["samples"]
    assert rows.shape == (4, 4, 2, 6) and torch.equal(rows[3], image[0, :, 6:8])
    assert torch.equal(_cut(registry, image, "t", 1)["samples"], image)  # no time axis on a 4-D latent
