"""BatchImages/Masks/LatentsNode, ResizeImageMaskNode and ComfyMathExpression through the real registry and
executor (their inputs are Autogrow / DynamicCombo; see tests/executor/test_dynamic_inputs.py)."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from executor.errors import GraphRunError, PromptValidationError
from executor.testing import run_graph


def _empty(width: int, height: int, color: int = 0, batch: int = 1) -> dict[str, Any]:
    return {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch,
                                                   "color": color}}


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    grow = info["BatchImagesNode"]["input"]["required"]["images"]
    assert grow[0] == "COMFY_AUTOGROW_V3"
    assert grow[1]["template"]["prefix"] == "image" and grow[1]["template"]["min"] == 2
    assert grow[1]["template"]["max"] == 50
    resize = info["ResizeImageMaskNode"]
    assert resize["input_order"]["required"] == ["input", "resize_type", "scale_method"]
    keys = [o["key"] for o in resize["input"]["required"]["resize_type"][1]["options"]]
    assert keys == ["scale dimensions", "scale by multiplier", "scale longer dimension", "scale shorter dimension",
                    "scale width", "scale height", "scale total pixels", "match size", "scale to multiple"]
    assert resize["output"] == ["COMFY_MATCHTYPE_V3"] and resize["output_name"] == ["resized"]
    math_node = info["ComfyMathExpression"]
    assert math_node["output"] == ["FLOAT", "INT", "BOOLEAN"] and math_node["output_name"] == ["FLOAT", "INT", "BOOL"]
    assert math_node["input"]["required"]["values"][1]["template"]["names"][:3] == ["a", "b", "c"]


def test_batch_images_resizes_to_the_first(registry: Any) -> None:
    graph = {"1": _empty(32, 16, 0xFF0000), "2": _empty(8, 8, 0x00FF00, batch=2), "3": _empty(32, 16, 0x0000FF),
             "4": {"class_type": "BatchImagesNode", "inputs": {"images.image0": ["1", 0], "images.image1": ["2", 0],
                                                               "images.image2": ["3", 0]}},
             "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}
    out = run_graph(registry, graph).value("4")
    assert out.shape == (4, 16, 32, 3)
    assert torch.allclose(out[0, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(out[1:3], torch.tensor([0, 1.0, 0]).expand(2, 16, 32, 3))  # resized from 8x8
    assert torch.allclose(out[3, 0, 0], torch.tensor([0, 0, 1.0]))
    graph["4"]["inputs"] = {"images.image0": ["1", 0]}  # min 2
    with pytest.raises(PromptValidationError, match="images.image1"):
        run_graph(registry, graph)


def test_batch_images_pads_rgb_with_opaque_alpha() -> None:
    from nodes.dynamic_staples import batch_images
    rgba = torch.rand(1, 4, 4, 4)
    out = batch_images([torch.zeros(1, 4, 4, 3), rgba])
    assert out.shape == (2, 4, 4, 4) and torch.all(out[0, ..., 3] == 1.0) and torch.equal(out[1], rgba[0])


def test_batch_masks_and_latents(registry: Any) -> None:
    graph = {"1": {"class_type": "SolidMask", "inputs": {"value": 0.25, "width": 16, "height": 8}},
             "2": {"class_type": "SolidMask", "inputs": {"value": 0.75, "width": 4, "height": 4}},
             "3": {"class_type": "BatchMasksNode", "inputs": {"masks.mask0": ["1", 0], "masks.mask1": ["2", 0]}},
             "4": {"class_type": "MaskPreview", "inputs": {"mask": ["3", 0]}},
             "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
             "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "7": {"class_type": "BatchLatentsNode", "inputs": {"latents.latent0": ["5", 0],
                                                                "latents.latent1": ["6", 0]}},
             "8": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "t"}}}
    run = run_graph(registry, graph)
    masks = run.value("3")
    assert masks.shape == (2, 8, 16) and torch.all(masks[0] == 0.25) and torch.allclose(masks[1], torch.tensor(0.75))
    latent = run.value("7")
    assert latent["samples"].shape == (3, 4, 8, 8) and latent["batch_index"] == [0, 1, 0]


def _resize_graph(resize_type: str, size: tuple[int, int] = (128, 64), mask: bool = False,
                  **options: Any) -> dict[str, Any]:
    width, height = size
    source = ({"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}} if mask
              else _empty(width, height, 0x336699))
    inputs = {"input": ["1", 0], "resize_type": resize_type, "scale_method": "area",
              **{f"resize_type.{k}": v for k, v in options.items()}}
    return {"1": source, "9": _empty(40, 30),
            "2": {"class_type": "ResizeImageMaskNode", "inputs": inputs},
            "3": {"class_type": "GetImageSize" if not mask else "MaskPreview",
                  "inputs": {"image": ["2", 0]} if not mask else {"mask": ["2", 0]}},
            "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}} if not mask else
            {"class_type": "MaskPreview", "inputs": {"mask": ["2", 0]}}}


# (resize_type, options, input WxH, expected WxH) -- each expected size by ComfyUI's rule, worked by hand
CASES = [
    ("scale dimensions", {"width": 50, "height": 20, "crop": "disabled"}, (128, 64), (50, 20)),
    ("scale dimensions", {"width": 0, "height": 32, "crop": "center"}, (128, 64), (64, 32)),
    ("scale dimensions", {"width": 0, "height": 0, "crop": "center"}, (128, 64), (128, 64)),
    ("scale by multiplier", {"multiplier": 0.33}, (128, 64), (round(128 * 0.33), round(64 * 0.33))),
    ("scale longer dimension", {"longer_size": 100}, (128, 64), (100, 50)),
    ("scale longer dimension", {"longer_size": 100}, (64, 128), (50, 100)),
    ("scale shorter dimension", {"shorter_size": 100}, (128, 64), (200, 100)),
    ("scale width", {"width": 96}, (128, 64), (96, 48)),
    ("scale height", {"height": 48}, (128, 64), (96, 48)),
    ("scale total pixels", {"megapixels": 0.01}, (128, 64),
     (round(128 * math.sqrt(int(0.01 * 1048576) / 8192)), round(64 * math.sqrt(int(0.01 * 1048576) / 8192)))),
    ("match size", {"match": ["9", 0], "crop": "center"}, (128, 64), (40, 30)),
    ("scale to multiple", {"multiple": 48}, (130, 70), (96, 48)),  # cover-scaled to 96x52, then center-cropped
    ("scale to multiple", {"multiple": 8}, (128, 64), (128, 64)),
]


@pytest.mark.parametrize(("resize_type", "options", "size", "expected"), CASES)
def test_resize_rules(registry: Any, resize_type: str, options: dict[str, Any], size: tuple[int, int],
                      expected: tuple[int, int]) -> None:
    run = run_graph(registry, _resize_graph(resize_type, size, **options))
    image = run.value("2")
    assert (image.shape[2], image.shape[1]) == expected and image.shape[3] == 3
    assert torch.allclose(image.mean(dim=(0, 1, 2)), torch.tensor([0x33, 0x66, 0x99]) / 255.0, atol=1e-5)
    run = run_graph(registry, _resize_graph(resize_type, size, mask=True, **options))
    mask = run.value("2")
    assert mask.dim() == 3 and (mask.shape[2], mask.shape[1]) == expected


def test_resize_matches_image_scale(registry: Any) -> None:
    """The same pixels as ImageScale for the same size, method and crop."""
    noise = torch.rand(1, 37, 53, 3, generator=torch.Generator().manual_seed(0))
    from nodes.dynamic_staples import resize
    for method in ("nearest-exact", "bilinear", "area", "bicubic", "lanczos"):
        ours = resize(noise, method, {"resize_type": "scale dimensions", "width": 29, "height": 41,
                                      "crop": "center"})
        theirs = registry.get("ImageScale")().upscale(noise, method, 29, 41, "center")[0]
        assert torch.equal(ours, theirs), method


def test_resize_refuses_an_unknown_rule_and_missing_option_inputs(registry: Any) -> None:
    with pytest.raises(PromptValidationError, match="resize_type"):
        run_graph(registry, _resize_graph("scale sideways"))
    with pytest.raises(PromptValidationError, match="resize_type.longer_size"):
        run_graph(registry, _resize_graph("scale longer dimension"))


def _math(expression: str, **values: Any) -> dict[str, Any]:
    graph: dict[str, Any] = {}
    inputs: dict[str, Any] = {"expression": expression}
    for i, (name, value) in enumerate(values.items()):
        kind = {bool: "PrimitiveBoolean", int: "PrimitiveInt", float: "PrimitiveFloat"}[type(value)]
        graph[str(10 + i)] = {"class_type": kind, "inputs": {"value": value}}
        inputs[f"values.{name}"] = [str(10 + i), 0]
    graph["1"] = {"class_type": "ComfyMathExpression", "inputs": inputs}
    for slot in range(3):
        graph[str(2 + slot)] = {"class_type": "PreviewAny", "inputs": {"source": ["1", slot]}}
    return graph


@pytest.mark.parametrize(("expression", "values", "expected"), [
    ("a + b", {"a": 2, "b": 0.5}, (2.5, 2, True)),
    ("floor(a/32)*32", {"a": 1000}, (992.0, 992, True)),
    ("a & ~1", {"a": 7}, (6.0, 6, True)),
    ("a > 2048", {"a": 1024}, (0.0, 0, False)),
    ("sum(values) / 3", {"a": 1, "b": 2.0, "c": True}, (4 / 3, 1, True)),
    ("max(a, b) ** 2", {"a": -3, "b": 2}, (4.0, 4, True)),
])
def test_math_expression(registry: Any, expression: str, values: dict[str, Any],
                         expected: tuple[float, int, bool]) -> None:
    run = run_graph(registry, _math(expression, **values))
    got = (run.value("1", 0), run.value("1", 1), run.value("1", 2))
    assert got == pytest.approx(expected) and type(got[1]) is int and type(got[2]) is bool


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').getcwd()", "expression"),
    ("a.__class__", "expression"),
    ("'text'", "must give a number"),
    ("pow(a, 5000)", "exponent"),
    ("   ", "empty"),
])
def test_math_refusals_name_the_expression(registry: Any, expression: str, message: str) -> None:
    with pytest.raises(GraphRunError, match=message):
        run_graph(registry, _math(expression, a=2))
