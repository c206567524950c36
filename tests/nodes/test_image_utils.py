"""Image / mask utility nodes: specs as ComfyUI 0.3.64 serves them, results on tiny tensors checked by hand."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image


def _run(registry: Any, name: str, **inputs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def _ramp(b: int, h: int, w: int, c: int = 3) -> torch.Tensor:
    return torch.arange(b * h * w * c, dtype=torch.float32).reshape(b, h, w, c) / (b * h * w * c)


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    cats = {n: info[n]["category"] for n in ("GetImageSize", "ImageFlip", "ImageRotate", "ImageStitch",
                                             "ResizeAndPadImage", "ImageScaleToMaxDimension", "ImageAddNoise",
                                             "ImageColorToMask", "JoinImageWithAlpha", "SplitImageWithAlpha",
                                             "PorterDuffImageComposite", "MaskPreview")}
    assert cats == {"GetImageSize": "image", "ImageFlip": "image/transform", "ImageRotate": "image/transform",
                    "ImageStitch": "image/transform", "ResizeAndPadImage": "image/transform",
                    "ImageScaleToMaxDimension": "image/upscaling", "ImageAddNoise": "image",
                    "ImageColorToMask": "mask", "JoinImageWithAlpha": "mask/compositing",
                    "SplitImageWithAlpha": "mask/compositing", "PorterDuffImageComposite": "mask/compositing",
                    "MaskPreview": "mask"}
    assert info["GetImageSize"]["output_name"] == ["width", "height", "batch_size"]
    assert info["ImageFlip"]["display_name"] == "ImageFlip"  # no display name in 0.3.64
    assert info["PorterDuffImageComposite"]["display_name"] == "Porter-Duff Image Composite"
    assert info["PorterDuffImageComposite"]["input"]["required"]["mode"][1] == {"default": "DST"}
    assert len(info["PorterDuffImageComposite"]["input"]["required"]["mode"][0]) == 18
    st = info["ImageStitch"]["input"]
    assert st["optional"] == {"image2": ["IMAGE"]}
    assert st["required"]["spacing_width"][1] == {"default": 0, "min": 0, "max": 1024, "step": 2}
    assert info["ImageColorToMask"]["input"]["required"]["color"][1]["max"] == 0xFFFFFF
    assert info["ImageAddNoise"]["input"]["required"]["seed"][1]["control_after_generate"] is True
    mp = info["MaskPreview"]
    assert mp["output_node"] is True and mp["input"]["required"] == {"mask": ["MASK"]}
    assert mp["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def test_get_image_size(registry: Any) -> None:
    assert _run(registry, "GetImageSize", image=torch.zeros(3, 5, 7, 3)) == (7, 5, 3)


def test_flip_and_rotate(registry: Any) -> None:
    img = _ramp(2, 2, 3)
    a = img.numpy()
    (x,) = _run(registry, "ImageFlip", image=img, flip_method="x-axis: vertically")
    (y,) = _run(registry, "ImageFlip", image=img, flip_method="y-axis: horizontally")
    np.testing.assert_array_equal(x.numpy(), a[:, ::-1])
    np.testing.assert_array_equal(y.numpy(), a[:, :, ::-1])
    for rotation, turns in (("none", 0), ("90 degrees", 1), ("180 degrees", 2), ("270 degrees", 3)):
        (r,) = _run(registry, "ImageRotate", image=img, rotation=rotation)
        np.testing.assert_array_equal(r.numpy(), np.rot90(a, k=-turns, axes=(1, 2)))  # clockwise
    (r90,) = _run(registry, "ImageRotate", image=img, rotation="90 degrees")
    assert r90.shape == (2, 3, 2, 3) and torch.equal(r90[0, 0, 0], img[0, 1, 0])  # bottom-left goes top-left


def test_stitch_without_resize_pads_spaces_and_orders(registry: Any) -> None:
    a = torch.full((1, 2, 3, 3), 0.25)
    b = torch.full((2, 4, 2, 3), 0.75)
    (out,) = _run(registry, "ImageStitch", image1=a, image2=b, direction="right", match_image_size=False,
                  spacing_width=1, spacing_color="red")
    # batch 2 (image1's last repeated), height 4 (image1 padded 1 above / 1 below), 3 + 2 spacing + 2;
    # a coloured spacing pads with 0 (only white pads with 1)
    assert out.shape == (2, 4, 7, 3)
    assert torch.all(out[:, 1:3, :3] == 0.25) and torch.all(out[:, 0, :3] == 0.0) and torch.all(out[:, 3, :3] == 0)
    assert torch.equal(out[0, 0, 3], torch.tensor([1.0, 0.0, 0.0])) and torch.all(out[:, :, 5:] == 0.75)
    (left,) = _run(registry, "ImageStitch", image1=a, image2=b, direction="left", match_image_size=False,
                   spacing_width=0, spacing_color="black")
    assert left.shape == (2, 4, 5, 3) and torch.all(left[:, :, :2] == 0.75) and torch.all(left[:, 0, 2:] == 0.0)
    (down,) = _run(registry, "ImageStitch", image1=a, image2=b, direction="down", match_image_size=False,
                   spacing_width=2, spacing_color="white")
    assert down.shape == (2, 8, 3, 3) and torch.all(down[:, 2:4] == 1.0)
    # image2 (width 2) padded to 3: the smaller half (0) before, 1 column after
    assert torch.all(down[:, 4:, 2] == 1.0) and torch.all(down[:, 4:, :2] == 0.75)
    (same,) = _run(registry, "ImageStitch", image1=a, direction="up", match_image_size=True, spacing_width=0,
                   spacing_color="white")
    assert same is a


def test_stitch_match_size_and_channels(registry: Any) -> None:
    a = torch.rand(1, 4, 6, 4)  # RGBA
    b = torch.full((1, 8, 4, 3), 0.5)  # RGB, aspect 0.5
    (out,) = _run(registry, "ImageStitch", image1=a, image2=b, direction="right", match_image_size=True,
                  spacing_width=2, spacing_color="blue")
    assert out.shape == (1, 4, 6 + 2 + 2, 4)  # image2 resized to height 4, width int(4 * 0.5)
    assert torch.equal(out[0, 0, 6], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # blue spacing, opaque
    assert torch.all(out[..., 8:, 3] == 1.0)  # image2 got an opaque alpha channel
    assert torch.allclose(out[..., 8:, :3], torch.full((1, 4, 2, 3), 0.5), atol=1 / 255)


def test_resize_and_pad_and_max_dimension(registry: Any) -> None:
    img = _ramp(1, 2, 4)  # H 2, W 4
    (out,) = _run(registry, "ResizeAndPadImage", image=img, target_width=8, target_height=8, padding_color="white",
                  interpolation="nearest-exact")
    big = img.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # x2 nearest: 4 x 8
    assert out.shape == (1, 8, 8, 3)
    assert torch.all(out[:, :2] == 1.0) and torch.all(out[:, 6:] == 1.0)  # (8 - 4) // 2 rows above and below
    assert torch.equal(out[:, 2:6], big)
    (black,) = _run(registry, "ResizeAndPadImage", image=img, target_width=4, target_height=6,
                    padding_color="black", interpolation="nearest-exact")
    assert torch.all(black[:, :2] == 0.0) and torch.equal(black[:, 2:4], img)
    (scaled,) = _run(registry, "ImageScaleToMaxDimension", image=img, upscale_method="nearest-exact",
                     largest_size=8)
    assert torch.equal(scaled, big)
    (tall,) = _run(registry, "ImageScaleToMaxDimension", image=torch.rand(1, 6, 4, 3), upscale_method="bilinear",
                   largest_size=9)
    assert tall.shape == (1, 9, 6, 3)  # width round(4 / 6 * 9) = 6
    (square,) = _run(registry, "ImageScaleToMaxDimension", image=torch.rand(1, 5, 5, 3), upscale_method="area",
                     largest_size=3)
    assert square.shape == (1, 3, 3, 3)


def test_add_noise_matches_a_seeded_torch_stream(registry: Any) -> None:
    img = torch.full((1, 3, 4, 3), 0.5)
    (out,) = _run(registry, "ImageAddNoise", image=img, seed=123, strength=0.2)
    torch.manual_seed(123)
    expected = torch.clip(img + 0.2 * torch.randn(img.shape), 0.0, 1.0)
    assert torch.allclose(out, expected)
    (clipped,) = _run(registry, "ImageAddNoise", image=img, seed=1, strength=1.0)
    assert clipped.min() >= 0.0 and clipped.max() <= 1.0 and not torch.equal(clipped, img)
    (same,) = _run(registry, "ImageAddNoise", image=img, seed=5, strength=0.0)
    assert torch.equal(same, img)


def test_color_to_mask(registry: Any) -> None:
    img = torch.zeros(1, 2, 2, 3)
    img[0, 0, 1] = torch.tensor([255, 0, 128]) / 255.0
    img[0, 1, 0] = torch.tensor([255, 0, 127]) / 255.0
    (mask,) = _run(registry, "ImageColorToMask", image=img, color=0xFF0080)
    assert mask.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]
    (black,) = _run(registry, "ImageColorToMask", image=img, color=0)
    assert black.tolist() == [[[1.0, 0.0], [0.0, 1.0]]]


def test_join_and_split_alpha(registry: Any) -> None:
    img = _ramp(2, 2, 3)
    mask = torch.tensor([[[0.0, 0.25, 1.0], [0.5, 0.5, 0.5]]])
    (rgba,) = _run(registry, "JoinImageWithAlpha", image=img, alpha=mask)
    assert rgba.shape == (2, 2, 3, 4) and torch.equal(rgba[..., :3], img)
    assert torch.equal(rgba[0, ..., 3], 1.0 - mask[0]) and torch.equal(rgba[1, ..., 3], 1.0 - mask[0])
    (resized,) = _run(registry, "JoinImageWithAlpha", image=img, alpha=torch.full((1, 5, 5), 0.25))
    assert torch.allclose(resized[..., 3], torch.full((2, 2, 3), 0.75))
    rgb, back = _run(registry, "SplitImageWithAlpha", image=rgba)
    assert torch.equal(rgb, img) and torch.allclose(back[0], mask[0])
    rgb2, none = _run(registry, "SplitImageWithAlpha", image=img)
    assert torch.equal(rgb2, img) and torch.equal(none, torch.zeros(2, 2, 3))


@pytest.mark.parametrize(("mode", "colour", "mask"), [
    ("SRC_OVER", 0.6, 0.0), ("DST_IN", 0.4, 0.5), ("XOR", 0.4, 0.5), ("CLEAR", 0.0, 1.0), ("ADD", 0.8, 0.0),
    ("MULTIPLY", 0.32, 0.5), ("SRC", 0.8, 0.5), ("DST", 0.4, 0.0), ("SCREEN", (0.4 + 0.4 - 0.16), 0.0),
])
def test_porter_duff_modes_by_hand(registry: Any, mode: str, colour: float, mask: float) -> None:
    # source colour 0.8 at alpha 0.5 (mask 0.5); destination colour 0.4, opaque (mask 0)
    src, dst = torch.full((1, 2, 2, 3), 0.8), torch.full((1, 2, 2, 3), 0.4)
    image, out_mask = _run(registry, "PorterDuffImageComposite", source=src, source_alpha=torch.full((1, 2, 2), 0.5),
                           destination=dst, destination_alpha=torch.zeros(1, 2, 2), mode=mode)
    assert torch.allclose(image, torch.full((1, 2, 2, 3), colour), atol=1e-6)
    assert torch.allclose(out_mask, torch.full((1, 2, 2), mask), atol=1e-6)


def test_porter_duff_resizes_source_to_destination(registry: Any) -> None:
    from nodes._base import NodeInputError

    image, mask = _run(registry, "PorterDuffImageComposite", source=torch.full((2, 2, 2, 3), 0.8),
                       source_alpha=torch.zeros(2, 2, 2), destination=torch.full((1, 4, 6, 3), 0.4),
                       destination_alpha=torch.zeros(1, 1, 1), mode="SRC_OVER")
    assert image.shape == (1, 4, 6, 3) and mask.shape == (1, 4, 6)  # shortest batch; sizes follow destination
    assert torch.allclose(image, torch.full((1, 4, 6, 3), 0.8), atol=1e-5)
    with pytest.raises(NodeInputError, match="channels"):
        _run(registry, "PorterDuffImageComposite", source=torch.zeros(1, 2, 2, 4), source_alpha=torch.zeros(1, 2, 2),
             destination=torch.zeros(1, 2, 2, 3), destination_alpha=torch.zeros(1, 2, 2), mode="SRC")


def test_mask_preview_writes_a_grey_temp_png(registry: Any, services: Any) -> None:
    mask = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])
    out = _run(registry, "MaskPreview", mask=mask)
    (entry,) = out["ui"]["images"]
    assert set(out["ui"]) == {"images"} and entry["type"] == "temp" and entry["subfolder"] == ""
    assert entry["filename"].startswith("ComfyUI_temp_") and entry["filename"].endswith("_00001_.png")
    pixels = np.asarray(Image.open(Path(services.paths.temp_dir) / entry["filename"]))
    assert pixels.shape == (2, 2, 3)
    expected = np.array([[0, 127], [255, 63]], dtype=np.uint8)  # uint8(255 * m), truncated
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)
