"""Latent maths/crop/blend, image filters (blur, sharpen, Canny, quantize), batches and latent files."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from nodes._base import NodeInputError


def node(registry: Any, name: str) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)


def gaussian(size: int, sigma: float) -> np.ndarray:
    """ComfyUI's post-processing kernel, written out independently: taps over [-1, 1], normalised."""
    t = np.linspace(-1.0, 1.0, size)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def correlate_reflect(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    r = kernel.shape[0] // 2
    padded = np.pad(plane, r, mode="reflect")
    out = np.zeros_like(plane)
    for i in range(plane.shape[0]):
        for j in range(plane.shape[1]):
            out[i, j] = (padded[i : i + 2 * r + 1, j : j + 2 * r + 1] * kernel).sum()
    return out


# ----------------------------------------------------------------------------------------- catalogue
def test_catalogue_entries(registry: Any) -> None:
    info = registry.object_info()
    expected = {
        "LatentBlend": ("Latent Blend", "_for_testing"), "LatentCrop": ("Crop Latent", "latent/transform"),
        "LatentAdd": ("LatentAdd", "latent/advanced"), "LatentSubtract": ("LatentSubtract", "latent/advanced"),
        "LatentMultiply": ("LatentMultiply", "latent/advanced"),
        "LatentInterpolate": ("LatentInterpolate", "latent/advanced"), "LatentBatch": ("LatentBatch", "latent/batch"),
        "LatentBatchSeedBehavior": ("LatentBatchSeedBehavior", "latent/advanced"),
        "ImageBlur": ("Image Blur", "image/postprocessing"), "ImageSharpen": ("Image Sharpen", "image/postprocessing"),
        "ImageQuantize": ("Image Quantize", "image/postprocessing"),
        "ImageScaleToTotalPixels": ("Scale Image to Total Pixels", "image/upscaling"),
        "Canny": ("Canny", "image/preprocessors"), "RepeatImageBatch": ("RepeatImageBatch", "image/batch"),
        "ImageFromBatch": ("ImageFromBatch", "image/batch"), "SaveLatent": ("SaveLatent", "_for_testing"),
        "LoadLatent": ("LoadLatent", "_for_testing"), "LoadImageOutput": ("Load Image (from Outputs)", "image"),
        "LatentFlip": ("Flip Latent", "latent/transform"), "ImageBlend": ("Image Blend", "image/postprocessing"),
    }
    for name, (display, category) in expected.items():
        assert (info[name]["display_name"], info[name]["category"]) == (display, category), name
    req = {n: info[n]["input"]["required"] for n in expected}
    assert req["LatentBlend"]["blend_factor"] == ["FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01}]
    assert list(req["LatentBlend"]) == ["samples1", "samples2", "blend_factor"]
    assert req["LatentCrop"]["width"] == ["INT", {"default": 512, "min": 64, "max": 16384, "step": 8}]
    assert req["LatentCrop"]["x"] == ["INT", {"default": 0, "min": 0, "max": 16384, "step": 8}]
    assert req["LatentMultiply"]["multiplier"][1] == {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
    assert req["LatentInterpolate"]["ratio"][1] == {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
    assert req["LatentBatchSeedBehavior"]["seed_behavior"] == [["random", "fixed"], {"default": "fixed"}]
    assert req["ImageBlur"]["blur_radius"] == ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}]
    assert req["ImageBlur"]["sigma"] == ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}]
    assert list(req["ImageSharpen"]) == ["image", "sharpen_radius", "sigma", "alpha"]
    assert req["ImageSharpen"]["alpha"][1] == {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}
    assert req["ImageScaleToTotalPixels"]["megapixels"][1] == {"default": 1.0, "min": 0.01, "max": 16.0,
                                                               "step": 0.01}
    assert req["ImageScaleToTotalPixels"]["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic",
                                                                   "lanczos"]
    assert req["ImageQuantize"]["dither"][0] == ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8",
                                                 "bayer-16"]
    assert req["Canny"]["low_threshold"][1] == {"default": 0.4, "min": 0.01, "max": 0.99, "step": 0.01}
    assert req["Canny"]["high_threshold"][1]["default"] == 0.8
    assert req["ImageFromBatch"]["batch_index"][1] == {"default": 0, "min": 0, "max": 4095}
    assert req["RepeatImageBatch"]["amount"][1] == {"default": 1, "min": 1, "max": 4096}
    assert req["SaveLatent"]["filename_prefix"] == ["STRING", {"default": "latents/ComfyUI"}]
    assert info["SaveLatent"]["output_node"] is True and info["SaveLatent"]["output"] == []
    assert info["SaveLatent"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    out_img = req["LoadImageOutput"]["image"]
    assert out_img[0] == "COMBO" and out_img[1]["image_folder"] == "output"
    assert out_img[1]["remote"]["route"] == "/internal/files/output"
    assert info["LoadImageOutput"]["experimental"] is True


# -------------------------------------------------------------------------------------------- latents
def test_latent_crop_offsets_in_latent_units_and_clamping(registry: Any) -> None:
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).repeat(2, 4, 1, 1)
    mask = torch.rand(2, 1, 256, 256)
    lat = {"samples": x, "noise_mask": mask, "batch_index": [5, 6]}
    (c,) = node(registry, "LatentCrop")(samples=lat, width=128, height=64, x=40, y=16)
    assert c["samples"].shape == (2, 4, 8, 16)
    assert torch.equal(c["samples"], x[:, :, 2:10, 5:21])  # 16 px -> 2, 40 px -> 5 latent units
    assert torch.equal(c["noise_mask"], mask[:, :, 16:80, 40:168]) and c["batch_index"] == [5, 6]
    # an origin past the edge is pulled back so 8 latent units (64 px) remain
    (far,) = node(registry, "LatentCrop")(samples={"samples": x}, width=512, height=64, x=1000, y=255)
    assert torch.equal(far["samples"], x[:, :, 24:32, 24:32])
    (odd,) = node(registry, "LatentCrop")(samples={"samples": x}, width=71, height=79, x=15, y=7)
    assert torch.equal(odd["samples"], x[:, :, 0:9, 1:9])  # sizes and offsets floor to multiples of 8 px


def test_latent_blend_endpoints_and_resize(registry: Any) -> None:
    a = torch.randn(2, 4, 8, 8)
    b = torch.randn(2, 4, 8, 8)
    blend = node(registry, "LatentBlend")
    (one,) = blend(samples1={"samples": a, "noise_mask": "m"}, samples2={"samples": b}, blend_factor=1.0)
    (zero,) = blend(samples1={"samples": a}, samples2={"samples": b}, blend_factor=0.0)
    (mid,) = blend(samples1={"samples": a}, samples2={"samples": b}, blend_factor=0.25)
    assert torch.equal(one["samples"], a) and one["noise_mask"] == "m"
    assert torch.equal(zero["samples"], b)
    assert torch.allclose(mid["samples"], 0.25 * a + 0.75 * b)
    (resized,) = blend(samples1={"samples": a}, samples2={"samples": torch.full((1, 4, 4, 6), 2.0)},
                       blend_factor=0.5)
    assert resized["samples"].shape == a.shape
    assert torch.allclose(resized["samples"], 0.5 * a + 1.0, atol=1e-5)
    with pytest.raises(NodeInputError, match="LatentBlend.*input 'samples2'"):
        blend(samples1={"samples": a}, samples2={"samples": torch.zeros(1, 16, 8, 8)}, blend_factor=0.5)


def test_latent_add_subtract_multiply(registry: Any) -> None:
    a = torch.randn(2, 4, 8, 8)
    b = torch.randn(1, 4, 8, 8)
    (s,) = node(registry, "LatentAdd")(samples1={"samples": a, "batch_index": [1, 2]}, samples2={"samples": b})
    assert torch.allclose(s["samples"], a + b) and s["batch_index"] == [1, 2]  # samples2 repeated to batch 2
    (d,) = node(registry, "LatentSubtract")(samples1={"samples": a}, samples2={"samples": torch.ones(2, 4, 4, 4)})
    assert torch.allclose(d["samples"], a - 1.0)  # resized (bilinear) ones stay ones
    (m,) = node(registry, "LatentMultiply")(samples={"samples": a}, multiplier=-2.5)
    assert torch.equal(m["samples"], a * -2.5)
    with pytest.raises(NodeInputError, match="LatentAdd.*input 'samples2'.*channel"):
        node(registry, "LatentAdd")(samples1={"samples": a}, samples2={"samples": torch.zeros(1, 16, 8, 8)})


def test_latent_interpolate(registry: Any) -> None:
    a = torch.zeros(1, 4, 2, 2)
    b = torch.zeros(1, 4, 2, 2)
    a[:, 0] = 2.0  # length 2 along channel 0
    b[:, 1] = 4.0  # length 4 along channel 1
    interp = node(registry, "LatentInterpolate")
    (half,) = interp(samples1={"samples": a}, samples2={"samples": b}, ratio=0.5)
    expected = torch.zeros(1, 4, 2, 2)
    expected[:, 0] = expected[:, 1] = 3.0 / math.sqrt(2)  # direction (1,1)/sqrt2, length (2+4)/2
    assert torch.allclose(half["samples"], expected)
    r = torch.randn(1, 4, 3, 3)
    s = torch.randn(1, 4, 3, 3)
    (first,) = interp(samples1={"samples": r}, samples2={"samples": s}, ratio=1.0)
    (second,) = interp(samples1={"samples": r}, samples2={"samples": s}, ratio=0.0)
    assert torch.allclose(first["samples"], r, atol=1e-5) and torch.allclose(second["samples"], s, atol=1e-5)
    (zeros,) = interp(samples1={"samples": torch.zeros(1, 4, 2, 2)}, samples2={"samples": a}, ratio=1.0)
    assert torch.isfinite(zeros["samples"]).all() and not zeros["samples"].any()


def test_latent_batch_and_seed_behavior(registry: Any) -> None:
    a = torch.randn(2, 4, 8, 8)
    b = torch.ones(1, 4, 4, 4)
    (cat,) = node(registry, "LatentBatch")(samples1={"samples": a}, samples2={"samples": b, "batch_index": [7]})
    assert cat["samples"].shape == (3, 4, 8, 8) and torch.equal(cat["samples"][:2], a)
    assert torch.allclose(cat["samples"][2], torch.ones(4, 8, 8)) and cat["batch_index"] == [0, 1, 7]
    seed = node(registry, "LatentBatchSeedBehavior")
    (fixed,) = seed(samples={"samples": a, "batch_index": [3, 4]}, seed_behavior="fixed")
    assert fixed["batch_index"] == [3, 3]
    (plain,) = seed(samples={"samples": a}, seed_behavior="fixed")
    assert plain["batch_index"] == [0, 0]
    source = {"samples": a, "batch_index": [3, 4]}
    (rand,) = seed(samples=source, seed_behavior="random")
    assert "batch_index" not in rand and source["batch_index"] == [3, 4]


# --------------------------------------------------------------------------------------------- images
def test_image_blur_is_the_normalised_kernel_with_reflect_padding(registry: Any) -> None:
    blur = node(registry, "ImageBlur")
    delta = torch.zeros(1, 9, 9, 3)
    delta[0, 4, 4, :] = 1.0
    (out,) = blur(image=delta, blur_radius=2, sigma=0.7)
    k = gaussian(5, 0.7)
    assert np.allclose(out[0, 2:7, 2:7, 1].numpy(), k, atol=1e-6)
    assert out[0, :2].abs().max() == 0 and abs(float(out.sum()) - 3.0) < 1e-5
    img = torch.rand(2, 7, 6, 3)
    (got,) = blur(image=img, blur_radius=3, sigma=1.5)
    want = correlate_reflect(img[1, :, :, 2].numpy().astype(np.float64), gaussian(7, 1.5))
    assert np.allclose(got[1, :, :, 2].numpy(), want, atol=1e-5)
    (flat,) = blur(image=torch.full((1, 5, 5, 3), 0.3), blur_radius=2, sigma=1.0)
    assert torch.allclose(flat, torch.full_like(flat, 0.3))  # reflect padding: no dark border
    with pytest.raises(NodeInputError, match="ImageBlur.*input 'blur_radius'"):
        blur(image=torch.rand(1, 4, 4, 3), blur_radius=5, sigma=1.0)


def test_image_sharpen(registry: Any) -> None:
    sharpen = node(registry, "ImageSharpen")
    img = torch.rand(1, 8, 8, 3)
    (same,) = sharpen(image=img, sharpen_radius=2, sigma=1.0, alpha=0.0)
    assert torch.allclose(same, img, atol=1e-6)
    step = torch.full((1, 8, 12, 3), 0.25)
    step[:, :, 6:, :] = 0.75
    (out,) = sharpen(image=step, sharpen_radius=1, sigma=1.0, alpha=0.1)
    k = gaussian(3, 1.0) * -1.0
    k[1, 1] += 1.0 - k.sum()
    want = np.clip(correlate_reflect(step[0, :, :, 0].numpy().astype(np.float64), k), 0, 1)
    assert np.allclose(out[0, :, :, 0].numpy(), want, atol=1e-5)
    assert out[0, 4, 5, 0] < 0.25 < 0.75 < out[0, 4, 6, 0] and out[0, 4, 0, 0] == pytest.approx(0.25)


def test_image_scale_to_total_pixels(registry: Any) -> None:
    scale = node(registry, "ImageScaleToTotalPixels")
    (big,) = scale(image=torch.rand(1, 512, 512, 3), upscale_method="nearest-exact", megapixels=1.0)
    assert big.shape == (1, 1024, 1024, 3)
    (wide,) = scale(image=torch.rand(2, 480, 640, 3), upscale_method="bilinear", megapixels=0.5)
    assert wide.shape == (2, 627, 836, 3)  # sqrt(524288 / 307200) = 1.3064: 836.09 x 627.07, rounded


def test_canny_finds_the_square_border_and_nothing_inside(registry: Any) -> None:
    img = torch.zeros(1, 32, 32, 3)
    img[:, 8:24, 8:24, :] = 1.0
    (edges,) = node(registry, "Canny")(image=img, low_threshold=0.4, high_threshold=0.8)
    assert edges.shape == (1, 32, 32, 3) and torch.equal(edges[..., 0], edges[..., 2])
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    ring = torch.zeros(32, 32)
    ring[8:24, 8:24] = 1.0
    ring[9:23, 9:23] = 0.0
    assert torch.equal(edges[0, :, :, 0], ring)
    (none,) = node(registry, "Canny")(image=torch.full((1, 16, 16, 3), 0.6), low_threshold=0.1,
                                      high_threshold=0.2)
    assert not none.any()


def test_canny_hysteresis_keeps_weak_edges_joined_to_strong_ones(registry: Any) -> None:
    img = torch.zeros(1, 24, 32, 3)
    img[:, 6:18, 4:12, :] = 1.0  # strong step
    img[:, 6:18, 20:28, :] = 0.25  # faint square, touching nothing strong
    canny = node(registry, "Canny")
    (strict,) = canny(image=img, low_threshold=0.3, high_threshold=0.8)
    assert strict[0, :, :16, 0].any() and not strict[0, :, 16:, 0].any()
    (loose,) = canny(image=img, low_threshold=0.3, high_threshold=0.35)
    assert loose[0, :, 16:, 0].any()
    with pytest.raises(NodeInputError, match="Canny.*input 'low_threshold'"):
        canny(image=img, low_threshold=0.9, high_threshold=0.2)


def test_image_quantize(registry: Any) -> None:
    img = torch.zeros(1, 8, 8, 3)
    img[:, :, :4] = torch.tensor([200, 30, 10]) / 255.0
    img[:, :, 4:] = torch.tensor([10, 90, 250]) / 255.0
    quant = node(registry, "ImageQuantize")
    (out,) = quant(image=img, colors=2, dither="none")
    assert torch.allclose(out, img, atol=1e-6)
    grad = torch.linspace(0, 1, 16).reshape(1, 1, 16, 1).expand(1, 16, 16, 3).contiguous()
    for dither in ("floyd-steinberg", "bayer-4"):
        (d,) = quant(image=grad, colors=4, dither=dither)
        assert d.shape == grad.shape and len(torch.unique(d.reshape(-1, 3), dim=0)) <= 4


def test_image_batch_helpers(registry: Any) -> None:
    img = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 2, 2, 3).contiguous()
    (rep,) = node(registry, "RepeatImageBatch")(image=img, amount=2)
    assert rep[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]
    (part,) = node(registry, "ImageFromBatch")(image=img, batch_index=1, length=5)
    assert part[:, 0, 0, 0].tolist() == [1, 2]
    (last,) = node(registry, "ImageFromBatch")(image=img, batch_index=10, length=1)
    assert last[:, 0, 0, 0].tolist() == [2]


# ---------------------------------------------------------------------------------------------- files
def test_save_latent_then_load_latent_round_trip(registry: Any, services: Any) -> None:
    samples = torch.randn(2, 4, 5, 7)
    prompt = {"3": {"class_type": "SaveLatent", "inputs": {}}}
    extra = {"workflow": {"nodes": [1]}}
    out = node(registry, "SaveLatent")(samples={"samples": samples}, filename_prefix="latents/ComfyUI",
                                       prompt=prompt, extra_pnginfo=extra)
    assert out == {"ui": {"latents": [{"filename": "ComfyUI_00001_.latent", "subfolder": "latents",
                                       "type": "output"}]}}
    path = Path(services.paths.output_dir) / "latents" / "ComfyUI_00001_.latent"
    assert path.is_file()
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == {"latent_tensor", "latent_format_version_0"}
        assert torch.equal(fh.get_tensor("latent_tensor"), samples)
        meta = fh.metadata()
    assert json.loads(meta["prompt"]) == prompt and json.loads(meta["workflow"]) == extra["workflow"]
    again = node(registry, "SaveLatent")(samples={"samples": samples}, filename_prefix="latents/ComfyUI")
    assert again["ui"]["latents"][0]["filename"] == "ComfyUI_00002_.latent"

    shutil.copy(path, Path(services.paths.input_dir) / "kept.latent")
    (Path(services.paths.input_dir) / "photo.png").write_bytes(b"")
    load_cls = registry.get("LoadLatent")
    assert load_cls.INPUT_TYPES()["required"]["latent"] == (["kept.latent"],)
    (loaded,) = node(registry, "LoadLatent")(latent="kept.latent")
    assert torch.equal(loaded["samples"], samples) and set(loaded) == {"samples"}
    (from_output,) = node(registry, "LoadLatent")(latent="latents/ComfyUI_00001_.latent [output]")
    assert torch.equal(from_output["samples"], samples)
    assert load_cls.VALIDATE_INPUTS(latent="kept.latent") is True
    assert load_cls.VALIDATE_INPUTS(latent="gone.latent") == "Invalid latent file: gone.latent"
    digest = load_cls.IS_CHANGED(latent="kept.latent")
    assert digest == load_cls.IS_CHANGED(latent="kept.latent") != load_cls.IS_CHANGED(latent="gone.latent")


def test_load_latent_legacy_scale_and_errors(registry: Any, services: Any) -> None:
    inp = Path(services.paths.input_dir)
    old = torch.randn(1, 4, 3, 3)
    save_file({"latent_tensor": old}, str(inp / "old.latent"))
    (loaded,) = node(registry, "LoadLatent")(latent="old.latent")
    assert torch.allclose(loaded["samples"], old * (1.0 / 0.18215))
    with pytest.raises(NodeInputError, match=r"LoadLatent.*input 'latent'.*'gone.latent' not found"):
        node(registry, "LoadLatent")(latent="gone.latent")
    (inp / "junk.latent").write_bytes(b"not safetensors")
    with pytest.raises(NodeInputError, match=r"input 'latent'.*'junk.latent'"):
        node(registry, "LoadLatent")(latent="junk.latent")
    with pytest.raises(NodeInputError, match="input 'latent'"):
        node(registry, "LoadLatent")(latent="../secret.latent")


def test_save_latent_disable_metadata_and_confinement(registry: Any, services: Any) -> None:
    services.disable_metadata = True
    out = node(registry, "SaveLatent")(samples={"samples": torch.zeros(1, 4, 2, 2)}, filename_prefix="plain",
                                       prompt={"a": 1})
    path = Path(services.paths.output_dir) / out["ui"]["latents"][0]["filename"]
    with safe_open(str(path), framework="pt") as fh:
        assert not fh.metadata()
    with pytest.raises(NodeInputError, match="SaveLatent.*input 'filename_prefix'"):
        node(registry, "SaveLatent")(samples={"samples": torch.zeros(1, 4, 2, 2)}, filename_prefix="../../evil")


def test_load_image_output_reads_annotated_output_files(registry: Any, services: Any) -> None:
    Image.new("RGB", (6, 4), (255, 0, 0)).save(Path(services.paths.output_dir) / "made.png")
    image, mask = node(registry, "LoadImageOutput")(image="made.png [output]")
    assert image.shape == (1, 4, 6, 3) and image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    cls = registry.get("LoadImageOutput")
    assert cls.VALIDATE_INPUTS(image="made.png [output]") is True
    assert cls.VALIDATE_INPUTS(image="made.png") == "Invalid image file: made.png"  # unannotated = input/
