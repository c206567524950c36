"""SaveImageAdvanced (PNG 8/16-bit, EXR float, AVIF) and ImageColorSpace: files read back, metadata, formulas."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from executor.errors import GraphRunError, PromptValidationError
from executor.testing import run_graph

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}
EXTRA = {"workflow": WORKFLOW}


def _images(batch: int = 2, h: int = 6, w: int = 10, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, h, w, c, generator=torch.Generator().manual_seed(seed))


def _save(registry: Any, images: torch.Tensor, fmt: dict[str, Any], prefix: str = "adv/img",
          **hidden: Any) -> dict[str, Any]:
    cls = registry.get("SaveImageAdvanced")
    out: dict[str, Any] = getattr(cls(), cls.FUNCTION)(images=images, filename_prefix=prefix, format=fmt, **hidden)
    return out


def _decode(path: Path, layout: str) -> np.ndarray:
    import av
    from av.video.codeccontext import VideoCodecContext

    codec = av.CodecContext.create(path.suffix[1:], "r")
    assert isinstance(codec, VideoCodecContext)
    (frame,) = codec.decode(av.Packet(path.read_bytes()))
    array: np.ndarray = frame.to_ndarray(format=layout)
    return array


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def test_specs(registry: Any) -> None:
    info = registry.object_info()["SaveImageAdvanced"]
    assert info["output"] == ["IMAGE"] and info["output_name"] == ["images"] and info["output_node"] is True
    assert info["input_order"]["required"] == ["images", "filename_prefix", "format"]
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    kind, spec = info["input"]["required"]["format"]
    assert kind == "COMFY_DYNAMICCOMBO_V3" and [o["key"] for o in spec["options"]] == ["png", "exr", "avif"]
    png, exr, avif = (o["inputs"]["required"] for o in spec["options"])
    assert list(png) == ["bit_depth", "input_color_space"] and png["bit_depth"][0] == ["8-bit", "16-bit"]
    assert exr["bit_depth"][0] == ["32-bit float"] and exr["input_color_space"][0] == ["sRGB", "HDR", "linear"]
    assert list(avif) == ["bit_depth", "input_color_space", "crf", "save_mode"]
    assert avif["crf"][1]["default"] == 18 and avif["save_mode"][0] == "COMFY_DYNAMICCOMBO_V3"
    color = registry.object_info()["ImageColorSpace"]
    assert color["category"] == "image/color" and color["input"]["required"]["source"][0] == ["sRGB", "HDR", "HDR PQ"]


def test_png_8_bit_pixels_names_and_workflow(registry: Any, services: Any) -> None:
    from PIL import Image

    from engine.png import read_graphs

    images = _images()
    fmt = {"format": "png", "bit_depth": "8-bit", "input_color_space": "sRGB"}
    out = _save(registry, images, fmt, prompt=PROMPT, extra_pnginfo=EXTRA)
    assert out["ui"] == {"images": [{"filename": f"img_0000{i}.png", "subfolder": "adv", "type": "output"}
                                    for i in (1, 2)]}
    assert out["result"][0] is images
    folder = Path(services.paths.output_dir) / "adv"
    for i in (0, 1):
        with Image.open(folder / f"img_0000{i + 1}.png") as img:
            assert img.mode == "RGB"
            expected = np.clip(images[i].numpy() * 255.0, 0, 255).astype(np.uint8)  # truncation, as ComfyUI
            np.testing.assert_array_equal(np.asarray(img), expected)
    workflow, prompt = read_graphs(folder / "img_00001.png")
    assert workflow == WORKFLOW and prompt == PROMPT
    data = (folder / "img_00001.png").read_bytes()
    assert data[12:16] == b"IHDR" and data[33 + 4:33 + 8] == b"tEXt"  # chunks right after IHDR
    again = _save(registry, images[:1], fmt)  # the counter continues past `img_00002.png`
    assert again["ui"]["images"][0]["filename"] == "img_00003.png"


def test_png_16_bit_error_below_one_part_in_65535(registry: Any, services: Any) -> None:
    images = _images(batch=1, c=4, seed=1)
    _save(registry, images, {"format": "png", "bit_depth": "16-bit", "input_color_space": "sRGB"}, prefix="deep")
    path = Path(services.paths.output_dir) / "deep_00001.png"
    assert path.read_bytes()[24] == 16  # IHDR bit depth
    back = _decode(path, "rgba64le").astype(np.float64) / 65535.0
    error = np.abs(back - images[0].numpy().astype(np.float64))
    assert error.max() < 1.0 / 65535 and error.max() > 0
    gray = _images(batch=1, c=1, seed=2)
    _save(registry, gray, {"format": "png", "bit_depth": "16-bit", "input_color_space": "sRGB"}, prefix="gray")
    back = _decode(Path(services.paths.output_dir) / "gray_00001.png", "gray16le") / 65535.0
    assert np.abs(back - gray[0, ..., 0].numpy()).max() < 1.0 / 65535


@pytest.mark.parametrize(("space", "primaries"), [("sRGB", (0.64, 0.33)), ("HDR", (0.708, 0.292)),
                                                  ("linear", (0.64, 0.33))])
def test_exr_scene_linear_and_header(registry: Any, services: Any, space: str, primaries: tuple[float, ...]) -> None:
    from engine.image_files import read_exr_attributes

    images = _images(batch=1, h=20, w=9, seed=3) * 1.2 - 0.1  # out-of-range values are kept, not clamped
    _save(registry, images, {"format": "exr", "bit_depth": "32-bit float", "input_color_space": space},
          prefix=f"hdr_{space}", prompt=PROMPT, extra_pnginfo=EXTRA)
    path = Path(services.paths.output_dir) / f"hdr_{space}_00001.exr"
    back = _decode(path, "gbrpf32le")
    x = images[0].numpy().astype(np.float64)
    if space == "sRGB":
        expected = np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0) + 0.055) / 1.055) ** 2.4)
    elif space == "HDR":  # BT.2100 inverse HLG OETF
        a, b, c = 0.17883277, 1 - 4 * 0.17883277, 0.5 - 0.17883277 * np.log(4 * 0.17883277)
        expected = np.where(x <= 0.5, x ** 2 / 3, (np.exp((np.maximum(x, 0.5) - c) / a) + b) / 12)
    else:
        expected = x
    assert np.abs(back - expected).max() < 2e-6
    assert back.max() > 1.0 and (space == "HDR" or back.min() < 0)  # HLG's x**2 / 3 is never negative
    attributes = read_exr_attributes(path.read_bytes())
    assert json.loads(attributes["prompt"][1]) == PROMPT and attributes["prompt"][0] == "string"
    assert json.loads(attributes["workflow"][1]) == WORKFLOW
    kind, raw = attributes["chromaticities"]
    assert kind == "chromaticities" and struct.unpack("<8f", raw)[:2] == pytest.approx(primaries)


def test_exr_alpha_untouched_and_no_metadata_when_disabled(registry: Any, services: Any) -> None:
    from engine.image_files import read_exr_attributes

    services.disable_metadata = True
    images = _images(batch=1, c=4, seed=4)
    _save(registry, images, {"format": "exr", "bit_depth": "32-bit float", "input_color_space": "sRGB"},
          prefix="rgba", prompt=PROMPT, extra_pnginfo=EXTRA)
    path = Path(services.paths.output_dir) / "rgba_00001.exr"
    back = _decode(path, "gbrapf32le")
    np.testing.assert_allclose(back[..., 3], images[0, ..., 3].numpy(), atol=0)
    np.testing.assert_allclose(back[..., :3], _srgb_to_linear(images[0, ..., :3].numpy()), atol=2e-6)
    assert not {"prompt", "workflow", "chromaticities"} & set(read_exr_attributes(path.read_bytes()))
    _save(registry, images[..., :3], {"format": "png", "bit_depth": "8-bit", "input_color_space": "sRGB"},
          prefix="plain", prompt=PROMPT, extra_pnginfo=EXTRA)
    assert b"tEXt" not in (Path(services.paths.output_dir) / "plain_00001.png").read_bytes()


def test_avif_still_and_animated(registry: Any, services: Any) -> None:
    import av

    ramp = torch.linspace(0, 1, 32)
    smooth = torch.stack([ramp[None, :].expand(16, 32), ramp[:16, None].expand(16, 32),
                          torch.full((16, 32), 0.5)], dim=-1)
    images = torch.stack([smooth, smooth.flip(1), smooth * 0.5])
    still = {"format": "avif", "bit_depth": "auto", "input_color_space": "sRGB", "crf": 10,
             "save_mode": {"save_mode": "still images"}}
    out = _save(registry, images, still, prefix="av")
    assert [e["filename"] for e in out["ui"]["images"]] == ["av_00001.avif", "av_00002.avif", "av_00003.avif"]
    assert "animated" not in out["ui"]
    with av.open(str(Path(services.paths.output_dir) / "av_00002.avif")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 1
    assert np.abs(frames[0] / 255.0 - images[1].numpy()).mean() < 0.02
    animated = {**still, "bit_depth": "10-bit YUV420",
                "save_mode": {"save_mode": "animated", "fps": 4.0, "loop_count": 0}}
    out = _save(registry, images, animated, prefix="anim")
    assert out["ui"] == {"images": [{"filename": "anim_00001.avif", "subfolder": "", "type": "output"}],
                         "animated": (True,)}
    with av.open(str(Path(services.paths.output_dir) / "anim_00001.avif")) as container:
        still_item, track = container.streams.video  # an image sequence: the primary item, then the track
        assert track.codec_context.pix_fmt == still_item.codec_context.pix_fmt == "yuv420p10le"
        assert len(list(container.decode(track))) == 3
    with pytest.raises(ValueError, match="alpha"):
        _save(registry, _images(batch=1, c=4), still, prefix="rgba")


def _graph(fmt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    inputs: dict[str, Any] = {"images": ["1", 0], "filename_prefix": "g"}
    inputs.update({("format" if key == "format" else f"format.{key}"): value for key, value in fmt.items()})
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImageAdvanced", "inputs": inputs}}


def test_through_the_executor_and_bad_values(registry: Any, services: Any) -> None:
    run = run_graph(registry, _graph({"format": "png", "bit_depth": "16-bit", "input_color_space": "sRGB"}),
                    extra_data={"extra_pnginfo": EXTRA})
    assert run.ui["2"]["images"] == [{"filename": "g_00001.png", "subfolder": "", "type": "output"}]
    assert run.value("2").shape == (1, 4, 8, 3)
    from engine.png import read_graphs
    assert read_graphs(Path(services.paths.output_dir) / "g_00001.png")[0] == WORKFLOW
    bad = [({"format": "tiff", "bit_depth": "8-bit"}, "format"),
           ({"format": "png", "bit_depth": "12-bit", "input_color_space": "sRGB"}, "format.bit_depth"),
           ({"format": "exr", "bit_depth": "32-bit float", "input_color_space": "HDR PQ"}, "format.input_color_space"),
           ({"format": "png", "input_color_space": "sRGB"}, "format.bit_depth")]
    for fmt, where in bad:
        with pytest.raises(PromptValidationError) as info:
            run_graph(registry, _graph(fmt))
        assert where in json.dumps(info.value.node_errors)
    with pytest.raises(GraphRunError, match="format.*alpha|alpha"):
        graph = _graph({"format": "avif", "bit_depth": "auto", "input_color_space": "sRGB", "crf": 18,
                        "save_mode": "still images"})
        graph["3"] = {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["1", 0], "alpha": ["4", 0]}}
        graph["4"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 4}}
        graph["2"]["inputs"]["images"] = ["3", 0]
        run_graph(registry, graph)


def test_color_space_formulas() -> None:
    from engine import color_space

    to2020 = color_space._matrices()["709->2020"]
    expected = torch.tensor([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]],
                            dtype=torch.float64)  # ITU-R BT.2087 table
    assert torch.allclose(to2020, expected, atol=6e-5)
    white = torch.ones(1, 1, 1, 3)
    pq = color_space.convert(white, "sRGB", "HDR PQ")  # SDR white is 203 cd/m2
    y = (203.0 / 10000) ** (2610 / 16384)
    signal = ((3424 / 4096 + 2413 / 128 * y) / (1 + 2392 / 128 * y)) ** (2523 / 32)
    assert torch.allclose(pq, torch.full_like(pq, signal), atol=1e-6) and abs(signal - 0.5807) < 1e-3
    colors = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(5)) * 0.9 + 0.05
    for space in ("HDR", "HDR PQ"):
        there = color_space.convert(colors, "sRGB", space)
        assert not torch.allclose(there, colors, atol=1e-2)
        assert torch.allclose(color_space.convert(there, space, "sRGB"), colors, atol=1e-4)
    bright = color_space.convert(torch.ones(1, 2, 2, 3), "HDR PQ", "sRGB")  # 10000 nits tone-mapped into 0..1
    assert float(bright.max()) <= 1.0 and float(bright.min()) > 0.9


def test_color_space_node(registry: Any) -> None:
    graph: dict[str, dict[str, Any]] = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1,
                                                          "color": 0xFFFFFF}},
             "2": {"class_type": "ImageColorSpace", "inputs": {"image": ["1", 0], "source": "sRGB",
                                                               "destination": "HDR"}},
             "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    hlg = run_graph(registry, graph).value("2")
    # 203 nits on a 1000-nit HLG display: scene light (0.203 ** (1/1.2)) through the HLG OETF
    scene = 0.203 ** (1 / 1.2)
    a = 0.17883277
    expected = a * np.log(12 * scene - (1 - 4 * a)) + 0.5 - a * np.log(4 * a)
    assert torch.allclose(hlg, torch.full_like(hlg, float(expected)), atol=1e-5)
    graph["2"]["inputs"]["destination"] = "Rec.2020"
    with pytest.raises(PromptValidationError, match="destination"):
        run_graph(registry, graph)


@pytest.mark.parametrize("mode", ["still images", "animated"])
def test_avif_exif_item_holds_prompt_and_workflow(registry: Any, services: Any, mode: str) -> None:
    import av
    from PIL import Image

    from engine.avif_metadata import read_exif_item

    images = torch.linspace(0, 1, 16 * 24 * 3).reshape(1, 16, 24, 3).repeat(2, 1, 1, 1)
    save_mode = {"save_mode": mode, "fps": 2.0, "loop_count": 3} if mode == "animated" else {"save_mode": mode}
    fmt = {"format": "avif", "bit_depth": "auto", "input_color_space": "sRGB", "crf": 18, "save_mode": save_mode}
    _save(registry, images, fmt, prefix="meta", prompt=PROMPT, extra_pnginfo=EXTRA)
    path = Path(services.paths.output_dir) / "meta_00001.avif"
    data = path.read_bytes()
    assert data[8:12] == b"avif"  # the major brand readers look for, sequences included
    payload = read_exif_item(data)
    assert payload is not None and payload[:4] == b"\0\0\0\0"
    exif = Image.Exif()
    exif.load(b"Exif\0\0" + payload[4:])
    assert exif[0x0110] == "prompt:" + json.dumps(PROMPT) and exif[0x010F] == "workflow:" + json.dumps(WORKFLOW)
    with Image.open(path) as img:  # an independent reader finds the same item through iref / iloc
        assert img.getexif()[0x0110] == "prompt:" + json.dumps(PROMPT)
    with av.open(str(path)) as container:  # the moved image (and track) offsets still decode
        streams = container.streams.video  # a sequence: the primary item, then the track
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(streams[-1])]
    assert (len(streams), len(frames)) == ((2, 2) if mode == "animated" else (1, 1))
    assert np.abs(frames[-1] / 255.0 - images[-1].numpy()).mean() < 0.02


def test_grayscale_batches(registry: Any, services: Any) -> None:
    gray = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(6))  # [B,H,W], as masks travel
    out = _save(registry, gray, {"format": "png", "bit_depth": "8-bit", "input_color_space": "sRGB"}, prefix="g8")
    assert [e["filename"] for e in out["ui"]["images"]] == ["g8_00001.png", "g8_00002.png"]
    back = _decode(Path(services.paths.output_dir) / "g8_00002.png", "gray")
    np.testing.assert_array_equal(back, np.clip(gray[1].numpy() * 255, 0, 255).astype(np.uint8))
    _save(registry, gray[:1, ..., None], {"format": "exr", "bit_depth": "32-bit float", "input_color_space": "linear"},
          prefix="g32")
    back = _decode(Path(services.paths.output_dir) / "g32_00001.exr", "grayf32le")
    np.testing.assert_array_equal(back, gray[0].numpy())
