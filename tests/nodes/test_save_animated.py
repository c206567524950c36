"""SaveAnimatedWEBP / SaveAnimatedPNG: the file ComfyUI writes (frames, timing, metadata) and the `ui` payload."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageSequence

PROMPT = {"1": {"class_type": "X", "inputs": {}}}
EXTRA = {"workflow": {"nodes": [], "links": []}}


def _frames() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 6, 10, 3, generator=gen)


def _uint8(frames: torch.Tensor) -> np.ndarray:
    return np.clip(frames.numpy() * 255.0, 0, 255).astype(np.uint8)  # ComfyUI truncates


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (type, payload) chunk of a PNG, in file order."""
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def _node(registry: Any, name: str) -> Any:
    cls = registry.get(name)
    return cls(), cls.FUNCTION


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    webp, png = info["SaveAnimatedWEBP"], info["SaveAnimatedPNG"]
    assert webp["category"] == png["category"] == "image/animation"
    assert webp["output_node"] is png["output_node"] is True and webp["output"] == png["output"] == []
    assert webp["input_order"]["required"] == ["images", "filename_prefix", "fps", "lossless", "quality", "method"]
    assert webp["input"]["required"]["method"][0] == ["default", "fastest", "slowest"]
    assert webp["input"]["required"]["fps"][1] == {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}
    assert png["input_order"]["required"] == ["images", "filename_prefix", "fps", "compress_level"]
    assert png["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def test_animated_png(registry: Any, services: Any) -> None:
    node, fn = _node(registry, "SaveAnimatedPNG")
    frames = _frames()
    out = getattr(node, fn)(images=frames, fps=4.0, compress_level=4, filename_prefix="anim/clip", prompt=PROMPT,
                            extra_pnginfo=EXTRA)
    assert out == {"ui": {"images": [{"filename": "clip_00001_.png", "subfolder": "anim", "type": "output"}],
                          "animated": (True,)}}
    path = Path(services.paths.output_dir) / "anim" / "clip_00001_.png"
    img = Image.open(path)
    decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]
    assert len(decoded) == 3 and img.info["duration"] == 250
    np.testing.assert_array_equal(np.stack(decoded), _uint8(frames))
    chunks = _chunks(path.read_bytes())
    types = [t for t, _ in chunks]
    comf = [payload for t, payload in chunks if t == b"comf"]
    assert comf == [b"prompt\0" + json.dumps(PROMPT).encode(), b"workflow\0" + json.dumps(EXTRA["workflow"]).encode()]
    assert types.index(b"comf") > types.index(b"IDAT")  # written after the image data

    single = getattr(node, fn)(images=frames[:1], fps=6.0, compress_level=1, filename_prefix="anim/clip")
    assert single == {"ui": {"images": [{"filename": "clip_00002_.png", "subfolder": "anim", "type": "output"}]}}
    assert b"comf" not in [t for t, _ in _chunks((path.parent / "clip_00002_.png").read_bytes())]


def test_animated_webp(registry: Any, services: Any) -> None:
    node, fn = _node(registry, "SaveAnimatedWEBP")
    frames = _frames()
    out = getattr(node, fn)(images=frames, fps=5.0, filename_prefix="ComfyUI", lossless=True, quality=80,
                            method="fastest", prompt=PROMPT, extra_pnginfo=EXTRA)
    assert out == {"ui": {"images": [{"filename": "ComfyUI_00001_.webp", "subfolder": "", "type": "output"}],
                          "animated": (True,)}}
    img = Image.open(Path(services.paths.output_dir) / "ComfyUI_00001_.webp")
    assert img.n_frames == 3
    decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]
    np.testing.assert_array_equal(np.stack(decoded), _uint8(frames))  # lossless
    img.seek(1)
    img.load()
    assert img.info["duration"] == 200 and img.info["timestamp"] == 200
    exif = img.getexif()
    assert exif[0x0110] == "prompt:" + json.dumps(PROMPT)
    assert exif[0x010F] == "workflow:" + json.dumps(EXTRA["workflow"])
    lossy = getattr(node, fn)(images=frames, fps=5.0, filename_prefix="ComfyUI", lossless=False, quality=50,
                              method="default")
    assert lossy["ui"]["images"][0]["filename"] == "ComfyUI_00002_.webp"


def test_bad_inputs_name_node_and_input(registry: Any) -> None:
    import pytest

    from nodes._base import NodeInputError

    node, fn = _node(registry, "SaveAnimatedWEBP")
    with pytest.raises(NodeInputError, match="SaveAnimatedWEBP.*'images'"):
        getattr(node, fn)(images=torch.zeros(0, 4, 4, 3), fps=1.0, filename_prefix="x", lossless=True, quality=1,
                          method="default")
    with pytest.raises(NodeInputError, match="'method'"):
        getattr(node, fn)(images=_frames(), fps=1.0, filename_prefix="x", lossless=True, quality=1, method="best")


def test_prompt_and_workflow_reach_the_file_through_the_executor(registry: Any, services: Any) -> None:
    from executor.testing import run_graph

    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 2, "color": 0xFF0000}},
        "2": {"class_type": "SaveAnimatedPNG", "inputs": {"images": ["1", 0], "filename_prefix": "graph",
                                                          "fps": 2.0, "compress_level": 4}},
        "3": {"class_type": "MaskPreview", "inputs": {"mask": ["4", 0]}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
    }
    run = run_graph(registry, prompt, extra_data={"extra_pnginfo": EXTRA})
    assert run.ui["2"] == {"images": [{"filename": "graph_00001_.png", "subfolder": "", "type": "output"}],
                           "animated": [True]}
    assert len(run.ui["3"]["images"]) == 2 and run.ui["3"]["images"][0]["type"] == "temp"
    data = (Path(services.paths.output_dir) / "graph_00001_.png").read_bytes()
    comf = {payload.split(b"\0", 1)[0]: json.loads(payload.split(b"\0", 1)[1]) for t, payload in _chunks(data)
            if t == b"comf"}
    assert comf[b"workflow"] == EXTRA["workflow"] and comf[b"prompt"]["2"]["class_type"] == "SaveAnimatedPNG"
