"""Image, mask and latent nodes on small tensors."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from nodes._base import NodeInputError


def node(registry: Any, name: str) -> Any:
    cls = registry.get(name)
    inst = cls()
    return getattr(inst, cls.FUNCTION)


def test_empty_latent_and_upscale(registry: Any) -> None:
    (lat,) = node(registry, "EmptyLatentImage")(width=128, height=64, batch_size=2)
    assert lat["samples"].shape == (2, 4, 8, 16) and not lat["samples"].any()
    (up,) = node(registry, "LatentUpscale")(samples=lat, upscale_method="nearest-exact", width=0, height=128,
                                            crop="disabled")
    assert up["samples"].shape == (2, 4, 16, 32)
    (up2,) = node(registry, "LatentUpscaleBy")(samples={"samples": torch.randn(1, 4, 8, 8)},
                                               upscale_method="bislerp", scale_by=1.5)
    assert up2["samples"].shape == (1, 4, 12, 12) and torch.isfinite(up2["samples"]).all()
    (small,) = node(registry, "LatentUpscale")(samples=lat, upscale_method="bilinear", width=16, height=16,
                                               crop="center")
    assert small["samples"].shape == (2, 4, 8, 8)  # clamped to >= 64 px


def test_latent_batch_nodes(registry: Any) -> None:
    x = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 4, 2, 2).clone()
    (one,) = node(registry, "LatentFromBatch")(samples={"samples": x}, batch_index=2, length=5)
    assert one["samples"][:, 0, 0, 0].tolist() == [2.0, 3.0] and one["batch_index"] == [2, 3]
    (rep,) = node(registry, "RepeatLatentBatch")(samples=one, amount=3)
    assert rep["samples"].shape[0] == 6 and rep["batch_index"] == [2, 3, 4, 5, 6, 7]
    assert "batch_index" not in {"samples": x}


def test_latent_composite_and_noise_mask(registry: Any) -> None:
    to = {"samples": torch.zeros(1, 4, 8, 8)}
    src = {"samples": torch.ones(1, 4, 4, 4)}
    (out,) = node(registry, "LatentComposite")(samples_to=to, samples_from=src, x=16, y=8, feather=0)
    assert out["samples"][0, 0, 1:5, 2:6].eq(1).all() and out["samples"].sum() == 4 * 16
    assert not to["samples"].any()  # input untouched
    (fe,) = node(registry, "LatentComposite")(samples_to=to, samples_from=src, x=16, y=8, feather=16)
    assert 0 < fe["samples"].sum() < out["samples"].sum()
    lat = {"samples": torch.zeros(1, 4, 8, 16)}
    (masked,) = node(registry, "SetLatentNoiseMask")(samples=lat, mask=torch.ones(64, 128))
    assert masked["noise_mask"].shape == (1, 1, 64, 128) and "noise_mask" not in lat
    with pytest.raises(NodeInputError, match="input 'mask'.*64x64 px.*128x64"):
        node(registry, "SetLatentNoiseMask")(samples=lat, mask=torch.ones(1, 64, 64))


def test_image_nodes(registry: Any) -> None:
    img = torch.rand(1, 32, 64, 3)
    (s,) = node(registry, "ImageScale")(image=img, upscale_method="bilinear", width=32, height=0, crop="disabled")
    assert s.shape == (1, 16, 32, 3)
    (c,) = node(registry, "ImageScale")(image=img, upscale_method="lanczos", width=16, height=16, crop="center")
    assert c.shape == (1, 16, 16, 3)
    (b,) = node(registry, "ImageScaleBy")(image=img, upscale_method="area", scale_by=0.5)
    assert b.shape == (1, 16, 32, 3)
    (inv,) = node(registry, "ImageInvert")(image=img)
    assert torch.allclose(inv + img, torch.ones_like(img))
    (batch,) = node(registry, "ImageBatch")(image1=img, image2=torch.rand(2, 16, 16, 3))
    assert batch.shape == (3, 32, 64, 3)
    (crop,) = node(registry, "ImageCrop")(image=img, width=10, height=100, x=60, y=2)
    assert crop.shape == (1, 30, 4, 3) and torch.equal(crop, img[:, 2:, 60:, :])
    padded, mask = node(registry, "ImagePadForOutpaint")(image=img, left=8, top=0, right=0, bottom=16,
                                                         feathering=4)
    assert padded.shape == (1, 48, 72, 3) and mask.shape == (1, 48, 72)
    assert padded[0, 40, 0].tolist() == [0.5, 0.5, 0.5]
    assert mask[0, 47, 0] == 1 and mask[0, 0, 40] == 0 and mask[0, 0, 8] == 1.0  # (4-0)/4 squared
    assert 0 < mask[0, 0, 10] < 1


def test_mask_nodes(registry: Any) -> None:
    (solid,) = node(registry, "SolidMask")(value=0.25, width=8, height=4)
    assert solid.shape == (1, 4, 8) and solid.eq(0.25).all()
    (inv,) = node(registry, "InvertMask")(mask=solid)
    assert inv.eq(0.75).all()
    (img,) = node(registry, "MaskToImage")(mask=solid)
    assert img.shape == (1, 4, 8, 3)
    (back,) = node(registry, "ImageToMask")(image=img, channel="green")
    assert torch.equal(back, solid)
    with pytest.raises(NodeInputError, match="no alpha channel"):
        node(registry, "ImageToMask")(image=img, channel="alpha")
    dot = torch.zeros(1, 7, 7)
    dot[0, 3, 3] = 1
    (grown,) = node(registry, "GrowMask")(mask=dot, expand=1, tapered_corners=True)
    assert grown.sum() == 5 and grown[0, 2, 2] == 0
    (square,) = node(registry, "GrowMask")(mask=dot, expand=2, tapered_corners=False)
    assert square.sum() == 25
    (shrunk,) = node(registry, "GrowMask")(mask=square, expand=-1, tapered_corners=False)
    assert shrunk.sum() == 9


def test_image_composite_masked(registry: Any) -> None:
    composite = node(registry, "ImageCompositeMasked")
    dest = torch.zeros(2, 6, 8, 3)
    src = torch.ones(1, 4, 4, 3)
    (plain,) = composite(destination=dest, source=src, x=6, y=1, resize_source=False)
    # pasted at (x=6, y=1), cut at the right edge, repeated over the batch; destination untouched
    assert plain.shape == dest.shape and not dest.any()
    assert plain[:, 1:5, 6:8].eq(1).all() and plain.sum() == 2 * 4 * 2 * 3
    mask = torch.zeros(1, 4, 4)
    mask[:, :, 2:] = 1.0
    (masked,) = composite(destination=dest, source=src, x=0, y=0, resize_source=False, mask=mask)
    assert masked[:, :4, 2:4].eq(1).all() and masked[:, :4, :2].eq(0).all() and masked[:, 4:].eq(0).all()
    (whole,) = composite(destination=dest, source=src, x=0, y=0, resize_source=True)
    assert whole.eq(1).all()
    (outside,) = composite(destination=dest, source=src, x=100, y=0, resize_source=False)
    assert not outside.any()
    with pytest.raises(NodeInputError, match="channels"):
        composite(destination=dest, source=torch.ones(1, 4, 4, 4), x=0, y=0, resize_source=False)


def test_mask_tools(registry: Any) -> None:
    ramp = torch.linspace(0, 1, 8).repeat(1, 4, 1)  # [1, 4, 8], 0 .. 1 along x
    (hard,) = node(registry, "ThresholdMask")(mask=ramp, value=0.5)
    assert hard[0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    (cut,) = node(registry, "CropMask")(mask=ramp, x=2, y=1, width=3, height=10)
    assert cut.shape == (1, 3, 3) and torch.equal(cut[0, 0], ramp[0, 0, 2:5])
    with pytest.raises(NodeInputError, match="outside"):
        node(registry, "CropMask")(mask=ramp, x=8, y=0, width=1, height=1)
    ones = torch.ones(1, 4, 8)
    small = torch.ones(1, 2, 2)
    (sub,) = node(registry, "MaskComposite")(destination=ones, source=small, x=7, y=3, operation="subtract")
    assert sub.sum() == 32 - 1 and sub[0, 3, 7] == 0  # cut at the edges: only one pixel overlaps
    (both,) = node(registry, "MaskComposite")(destination=hard, source=ones, x=0, y=0, operation="and")
    assert torch.equal(both, hard)
    (either,) = node(registry, "MaskComposite")(destination=hard, source=ones, x=0, y=0, operation="xor")
    assert torch.equal(either, 1 - hard)
    (added,) = node(registry, "MaskComposite")(destination=ramp, source=ones, x=0, y=0, operation="add")
    assert added.max() == 1.0  # clamped
    (soft,) = node(registry, "FeatherMask")(mask=ones, left=4, top=0, right=0, bottom=2)
    assert soft[0, 0, :4].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert soft[0, 3, 7] == pytest.approx(0.5) and soft[0, 2, 7] == 1.0


def test_latent_composite_masked_flip_rotate(registry: Any) -> None:
    dest = {"samples": torch.zeros(1, 4, 4, 4)}
    src = {"samples": torch.ones(1, 4, 2, 2)}
    (plain,) = node(registry, "LatentCompositeMasked")(destination=dest, source=src, x=16, y=8, resize_source=False)
    assert plain["samples"][0, :, 1:3, 2:4].eq(1).all() and plain["samples"].sum() == 4 * 4
    assert not dest["samples"].any()
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1.0  # right half of the (pixel) source
    (masked,) = node(registry, "LatentCompositeMasked")(destination=dest, source=src, x=0, y=0, resize_source=True,
                                                        mask=mask)
    assert masked["samples"][0, 0, :, 2:].eq(1).all() and masked["samples"][0, 0, :, :2].lt(0.5).all()
    lat = {"samples": torch.arange(4.0).reshape(1, 1, 2, 2), "batch_index": [0]}
    (flipped,) = node(registry, "LatentFlip")(samples=lat, flip_method="y-axis: horizontally")
    assert flipped["samples"][0, 0].tolist() == [[1, 0], [3, 2]] and flipped["batch_index"] == [0]
    (turned,) = node(registry, "LatentRotate")(samples=lat, rotation="90 degrees")
    assert turned["samples"][0, 0].tolist() == [[2, 0], [3, 1]]  # clockwise


def test_empty_image_and_blend(registry: Any) -> None:
    (img,) = node(registry, "EmptyImage")(width=4, height=2, batch_size=2, color=0xFF8000)
    assert img.shape == (2, 2, 4, 3)
    assert img[0, 0, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])
    grey = torch.full((1, 2, 4, 3), 0.5)
    (mixed,) = node(registry, "ImageBlend")(image1=img[:1], image2=grey, blend_factor=0.5, blend_mode="normal")
    assert mixed[0, 0, 0].tolist() == pytest.approx([0.75, (128 / 255 + 0.5) / 2, 0.25])
    (mult,) = node(registry, "ImageBlend")(image1=grey, image2=grey, blend_factor=1.0, blend_mode="multiply")
    assert torch.allclose(mult, torch.full_like(grey, 0.25))
    (diff,) = node(registry, "ImageBlend")(image1=grey, image2=img[:1], blend_factor=1.0, blend_mode="difference")
    assert diff.min() >= 0 and diff.max() <= 1  # clamped
    (resized,) = node(registry, "ImageBlend")(image1=grey, image2=torch.ones(1, 8, 8, 3), blend_factor=1.0,
                                              blend_mode="screen")
    assert resized.shape == grey.shape and torch.allclose(resized, torch.ones_like(grey))


def test_primitives(registry: Any) -> None:
    assert node(registry, "PrimitiveInt")(value=7) == (7,)
    assert node(registry, "PrimitiveStringMultiline")(value="a\nb") == ("a\nb",)
    assert node(registry, "PrimitiveBoolean")(value=True) == (True,)
