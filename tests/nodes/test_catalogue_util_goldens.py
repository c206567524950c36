"""The shared catalogue's utility cases (made by ComfyUI 0.3.64's executor) reproduced through Loom's real nodes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogue"


def _case(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / f"comfy__{name}.json").read_text())
    return data


def test_strings_basic_case_gives_comfyuis_preview_texts(registry: Any) -> None:
    from executor.testing import run_graph

    case = _case("util__strings_basic")
    run = run_graph(registry, case["graph"])
    expected = {node: out["text"] for node, out in case["outputs"].items()}
    got = {node: list(run.ui[node]["text"]) for node in expected}
    assert got == expected
    assert got["55"] == ["17"]  # StringLength's INT shows as text


def test_image_alpha_join_split_case_matches_comfyuis_pngs(registry: Any, services: Any, fixtures_dir: Path) -> None:
    from executor.testing import run_graph

    case = _case("util__image_alpha_join_split")
    for name in case["input_images"]:
        shutil.copy(fixtures_dir / "tiny-sd15" / name, Path(services.paths.input_dir) / name)
    graph = {nid: {k: v for k, v in node.items() if k != "is_changed"} for nid, node in case["graph"].items()}
    run = run_graph(registry, graph)
    for node, out in case["outputs"].items():
        images = run.ui[node]["images"]
        assert [img["filename"] for img in images] == out["comfy_files"]
        golden = np.load(CASES / f"comfy__util__image_alpha_join_split{out['arrays'][0]}")
        pil = Image.open(Path(services.paths.output_dir) / images[0]["subfolder"] / images[0]["filename"])
        assert pil.mode == ("RGBA" if golden.shape[-1] == 4 else "RGB")
        got = np.asarray(pil)
        assert got.shape == golden[0].shape == tuple(out["shapes"][0])
        diff = np.abs(got.astype(np.int16) - golden[0].astype(np.int16))
        assert diff.max() <= 2 and diff.mean() <= 0.01, (node, diff.max(), diff.mean())
