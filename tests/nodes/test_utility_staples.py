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


def test_image_crop_to_mask(registry: Any) -> None:
    from engine.mask_crop import crop_to_mask
    from executor.testing import run_node

    image = torch.zeros(1, 40, 60, 3)
    image[0, 10:20, 30:50] = torch.tensor([1.0, 0.5, 0.25])  # a 20 x 10 subject
    mask = torch.zeros(1, 40, 60)
    mask[0, 10:20, 30:50] = 1.0
    crop = crop_to_mask(image[0], mask[0], 64, 1.0, 0, (0.0, 0.0, 1.0), 1.0)
    # square box of the long side (20) around the centre (x 39.5, y 14.5): x 29..49, y 4..24
    assert crop.shape == (1, 3, 20, 20)
    assert torch.allclose(crop[0, :, 6:16, 1:20].permute(1, 2, 0), torch.tensor([1.0, 0.5, 0.25]).expand(10, 19, 3))
    assert torch.equal(crop[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))  # background where the mask is 0
    centred = torch.zeros(40, 60)
    centred[8:32, 12:48] = 1.0  # covers the centre: its inverse (border set, centre clear) is flipped back
    assert torch.equal(crop_to_mask(image[0], 1.0 - centred, 64, 1.0, 0, (0.0, 0.0, 1.0), 1.0),
                       crop_to_mask(image[0], centred, 64, 1.0, 0, (0.0, 0.0, 1.0), 1.0))
    padded = crop_to_mask(image[0], mask[0], 64, 2.0, 0, (0.0, 0.0, 0.0), 1.0)  # 40 x 40 box, 6 rows above 0
    assert padded.shape == (1, 3, 40, 40) and torch.equal(padded[0, :, :6], torch.zeros(3, 6, 40))
    cls = registry.get("ImageCropToMask")
    out = run_node(cls, images=image.repeat(2, 1, 1, 1), masks=mask, width=64, height=64, pad_factor=1.0,
                   grow_mask=0, background="#0000ff").result[0]
    assert out.shape == (2, 64, 64, 3) and torch.equal(out[0], out[1])
    assert torch.allclose(out[0, 32, 32], torch.tensor([1.0, 0.5, 0.25]), atol=2 / 255)
    with pytest.raises(GraphRunError, match="masks"):
        run_node(cls, images=image.repeat(3, 1, 1, 1), masks=mask.repeat(2, 1, 1), width=64, height=64,
                 pad_factor=1.0, grow_mask=0, background="#000000")


def test_painter(registry: Any, services: Any) -> None:
    from PIL import Image

    painting = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    painting.paste((255, 0, 0, 255), (0, 0, 32, 64))  # left half opaque red, right half clear
    painting.save(Path(services.paths.input_dir) / "paint.png")
    graph: dict[str, dict[str, Any]] = {
        "1": {"class_type": "Painter", "inputs": {"mask": "paint.png", "width": 64, "height": 64,
                                                  "bg_color": "#0000ff"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "4": {"class_type": "MaskPreview", "inputs": {"mask": ["1", 1]}}}
    run = run_graph(registry, graph)
    picture, mask = run.value("1", 0), run.value("1", 1)
    assert picture.shape == (1, 64, 64, 3) and mask.shape == (1, 64, 64)
    assert torch.equal(picture[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(picture[0, 0, 63], torch.tensor([0.0, 0.0, 1.0]))  # the canvas colour shows through
    assert float(mask[0, :, :32].min()) == 1.0 and float(mask[0, :, 32:].max()) == 0.0
    assert run.ui["1"]["images"][0]["type"] == "temp"
    graph["2"] = {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 32, "batch_size": 2, "color": 0x00FF00}}
    graph["1"]["inputs"]["image"] = ["2", 0]  # over an image: its size wins, the painting is resized to it
    picture = run_graph(registry, graph).value("1", 0)
    assert picture.shape == (1, 32, 128, 3) and torch.equal(picture[0, 16, 127], torch.tensor([0.0, 1.0, 0.0]))
    graph["1"]["inputs"]["mask"] = ""
    assert torch.equal(run_graph(registry, graph).value("1", 1), torch.zeros(1, 32, 128))
    graph["1"]["inputs"]["mask"] = "missing.png"
    with pytest.raises(GraphRunError, match="mask"):
        run_graph(registry, graph)


def test_flux_kontext_image_scale(registry: Any) -> None:
    from executor.testing import run_node
    from nodes.utility_staples import kontext_size

    assert kontext_size(512, 512) == (1024, 1024) and kontext_size(1920, 1080) == (1392, 752)
    assert kontext_size(1080, 1920) == (752, 1392) and kontext_size(100, 1000) == (672, 1568)
    image = torch.zeros(1, 90, 160, 3)
    image[:, :, :80] = 1.0  # left half white
    out = run_node(registry.get("FluxKontextImageScale"), image=image).result[0]
    assert out.shape == (1, 752, 1392, 3)  # 16:9 -> 1392 x 752 (1.85), the nearest aspect
    assert float(out[0, 376, 100, 0]) == 1.0 and float(out[0, 376, 1300, 0]) == 0.0
