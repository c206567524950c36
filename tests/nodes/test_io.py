"""LoadImage / LoadImageMask / SaveImage / PreviewImage against a tmp Loom directory."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.png import read_graphs, read_text_chunks
from nodes._base import NodeInputError


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def test_load_image_rgba_alpha_to_mask_and_listing(registry: Any, services: Any) -> None:
    inp = Path(services.paths.input_dir)
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(inp / "cut.png")
    Image.new("RGB", (5, 3), (0, 0, 255)).save(inp / "plain.jpg")
    (inp / "notes.txt").write_text("hi")
    choices = registry.get("LoadImage").INPUT_TYPES()["required"]["image"]
    assert choices == (["cut.png", "plain.jpg"], {"image_upload": True})
    image, mask = call(registry, "LoadImage", image="cut.png")
    assert image.shape == (1, 4, 6, 3) and image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert mask.shape == (1, 4, 6) and mask[0, 0, 0] == 1.0 and mask.sum() == 1.0
    image, mask = call(registry, "LoadImage", image="plain.jpg")
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 64, 64) and not mask.any()
    (m,) = call(registry, "LoadImageMask", image="cut.png", channel="red")
    assert m.shape == (1, 4, 6) and m.eq(1).all()
    (a,) = call(registry, "LoadImageMask", image="plain.jpg", channel="alpha")
    assert not a.any()


def test_load_image_exif_rotation(registry: Any, services: Any) -> None:
    img = Image.new("RGB", (8, 4), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(Path(services.paths.input_dir) / "rot.jpg", exif=exif.tobytes())
    image, _ = call(registry, "LoadImage", image="rot.jpg")
    assert image.shape == (1, 8, 4, 3)


def test_load_image_is_changed_and_validate(registry: Any, services: Any) -> None:
    path = Path(services.paths.input_dir) / "a.png"
    Image.new("RGB", (2, 2)).save(path)
    cls = registry.get("LoadImage")
    assert cls.IS_CHANGED(image="a.png") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cls.VALIDATE_INPUTS(image="a.png") is True
    assert cls.VALIDATE_INPUTS(image="gone.png") == "Invalid image file: gone.png"
    assert cls.VALIDATE_INPUTS(image="../../x.png") == "Invalid image file: ../../x.png"


def test_load_image_bad_inputs_name_input_and_file(registry: Any, services: Any) -> None:
    with pytest.raises(NodeInputError, match=r"input 'image'.*'gone.png' not found"):
        call(registry, "LoadImage", image="gone.png")
    (Path(services.paths.input_dir) / "fake.png").write_bytes(b"this is not a png")
    with pytest.raises(NodeInputError, match=r"LoadImage.*input 'image'.*'fake.png' is not a readable image"):
        call(registry, "LoadImage", image="fake.png")
    with pytest.raises(NodeInputError, match="input 'image'.*outside"):
        call(registry, "LoadImageMask", image="../secret.png", channel="alpha")


def test_save_image_naming_metadata_and_ui(registry: Any, services: Any) -> None:
    images = torch.rand(2, 8, 16, 3)
    prompt = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    extra = {"workflow": {"nodes": [], "version": 0.4}, "note": "hi"}
    out = call(registry, "SaveImage", images=images, filename_prefix="run/cat", prompt=prompt,
               extra_pnginfo=extra)
    assert out == {"ui": {"images": [
        {"filename": "cat_00001_.png", "subfolder": "run", "type": "output"},
        {"filename": "cat_00002_.png", "subfolder": "run", "type": "output"}]}}
    f = Path(services.paths.output_dir) / "run" / "cat_00002_.png"
    chunks = read_text_chunks(f)
    assert list(chunks) == ["prompt", "workflow", "note"] and json.loads(chunks["note"]) == "hi"
    assert read_graphs(f) == (extra["workflow"], prompt)
    expected = np.clip(255.0 * images[1].numpy(), 0, 255).astype(np.uint8)
    assert np.array_equal(np.array(Image.open(f)), expected)
    again = call(registry, "SaveImage", images=images[:1], filename_prefix="run/cat")
    assert again["ui"]["images"][0]["filename"] == "cat_00003_.png"
    with pytest.raises(NodeInputError, match="input 'filename_prefix'.*outside the output folder"):
        call(registry, "SaveImage", images=images, filename_prefix="../../evil")


def test_save_image_disable_metadata(registry: Any, services: Any) -> None:
    services.disable_metadata = True
    out = call(registry, "SaveImage", images=torch.rand(1, 4, 4, 3), filename_prefix="p", prompt={"a": 1})
    f = Path(services.paths.output_dir) / out["ui"]["images"][0]["filename"]
    assert read_text_chunks(f) == {}


def test_preview_image_goes_to_temp(registry: Any, services: Any) -> None:
    out = call(registry, "PreviewImage", images=torch.rand(1, 4, 4, 3))
    entry = out["ui"]["images"][0]
    assert entry["type"] == "temp" and entry["filename"].startswith("ComfyUI_temp_")
    assert len(entry["filename"]) == len("ComfyUI_temp_abcde_00001_.png")
    assert (Path(services.paths.temp_dir) / entry["filename"]).is_file()
