from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.png import PngMetadataError, read_graphs, read_text_chunks, save_png, to_uint8


def test_to_uint8_truncates_and_clips() -> None:
    x = torch.tensor([[[0.999, 0.5, -1.0]], [[2.0, 0.0039, 1.0]]])
    assert to_uint8(x).tolist() == [[[254, 127, 0]], [[255, 0, 255]]]


def test_png_metadata_round_trip(tmp_path: Path) -> None:
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "text": "caf\u00e9"}}}
    workflow = {"nodes": [], "links": [], "version": 0.4}
    path = tmp_path / "a.png"
    save_png(path, torch.rand(8, 16, 3), prompt=prompt, extra_pnginfo={"workflow": workflow, "other": [1, 2]})
    chunks = read_text_chunks(path)
    assert list(chunks)[:3] == ["prompt", "workflow", "other"]
    assert chunks["prompt"] == json.dumps(prompt)
    assert "\\u00e9" in chunks["prompt"]
    wf, pr = read_graphs(path)
    assert wf == workflow and pr == prompt
    with Image.open(path) as img:
        assert img.size == (16, 8) and img.mode == "RGB"


def test_png_without_metadata_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    save_png(path, np.zeros((4, 4, 3)), prompt={"a": 1}, metadata=False)
    assert read_graphs(path) == (None, None)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("workflow", "{not json")
    Image.new("RGB", (2, 2)).save(tmp_path / "bad.png", pnginfo=info)
    with pytest.raises(PngMetadataError, match="workflow"):
        read_graphs(tmp_path / "bad.png")
    (tmp_path / "junk.png").write_bytes(b"nope")
    with pytest.raises(PngMetadataError, match="junk.png"):
        read_text_chunks(tmp_path / "junk.png")
