"""Data-parallel planning (no Ray): which prompts split, the parts' graphs, merging ui, PNG metadata."""
from __future__ import annotations

import io
import json

import pytest
from cluster_helpers import txt2img
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.cluster.split import merge_ui, plan_split, set_png_text


def test_batch_split_into_latent_slices() -> None:
    p = txt2img(1, batch=5)
    parts = plan_split(p, 2)
    assert parts is not None and [(x.start, x.length) for x in parts] == [(0, 3), (3, 2)]
    for part in parts:
        slicer = part.prompt["5.split0"]
        assert slicer == {"class_type": "LatentFromBatch",
                          "inputs": {"samples": ["5", 0], "batch_index": part.start, "length": part.length}}
        assert part.prompt["3"]["inputs"]["latent_image"] == ["5.split0", 0]
        assert part.prompt["5"] == p["5"]  # the whole batch is still made: the noise follows batch slots
    assert p["3"]["inputs"]["latent_image"] == ["5", 0]  # the original is untouched
    assert len(plan_split(p, 9) or []) == 5


@pytest.mark.parametrize("change", [
    lambda p: p["5"]["inputs"].update(batch_size=1),
    lambda p: p["3"]["inputs"].update(sampler_name="euler_ancestral"),  # noise every step over the batch
    lambda p: p["3"]["inputs"].update(sampler_name="dpmpp_2m_sde"),
    lambda p: p["3"]["inputs"].update(sampler_name="dpm_adaptive"),  # step size from a norm over the batch
    lambda p: p["5"]["inputs"].update(width=72),  # not a multiple of 16: per-slot noise would differ
    lambda p: p.update({"10": {"class_type": "KSampler", "inputs": dict(p["3"]["inputs"])}}),
])
def test_prompts_that_must_run_whole(change: object) -> None:
    p = txt2img(1, batch=4)
    change(p)  # type: ignore[operator]
    assert plan_split(p, 2) is None
    assert plan_split(txt2img(1, batch=4), 1) is None


def test_merge_ui_keeps_batch_order() -> None:
    a = {"images": [{"filename": "a1"}, {"filename": "a2"}], "animated": [False]}
    b = {"images": [{"filename": "b1"}], "animated": [False]}
    assert merge_ui([a, b])["images"] == [{"filename": "a1"}, {"filename": "a2"}, {"filename": "b1"}]


def test_png_prompt_chunk_replaced_bytes_otherwise_same() -> None:
    def png(prompt: dict[str, object]) -> bytes:
        info = PngInfo()
        info.add_text("prompt", json.dumps(prompt))
        info.add_text("workflow", json.dumps({"w": 1}))
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG", pnginfo=info, compress_level=4)
        return buf.getvalue()

    whole, part = {"a": 1}, {"a": 1, "5.split0": {}}
    fixed = set_png_text(png(part), "prompt", whole)
    assert fixed == png(whole)
    assert Image.open(io.BytesIO(fixed)).info["workflow"] == '{"w": 1}'
