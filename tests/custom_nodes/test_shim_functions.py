"""Unit checks of shim helpers packs call directly (comfy.utils, node_helpers, comfy.samplers)."""
from __future__ import annotations

import pickle

import pytest
import torch


@pytest.fixture
def shims(packs):
    packs.load("good_pack")
    return packs


def test_load_torch_file_reads_safetensors_and_refuses_pickled_code(shims, tmp_path) -> None:
    import comfy.utils
    from safetensors.torch import save_file

    save_file({"w": torch.arange(4.0)}, str(tmp_path / "a.safetensors"), metadata={"k": "v"})
    sd, meta = comfy.utils.load_torch_file(str(tmp_path / "a.safetensors"), return_metadata=True)
    assert torch.equal(sd["w"], torch.arange(4.0)) and meta == {"k": "v"}
    assert comfy.utils.safetensors_header(str(tmp_path / "a.safetensors")).startswith(b"{")
    torch.save({"w": torch.ones(2)}, tmp_path / "b.pt")
    assert torch.equal(comfy.utils.load_torch_file(str(tmp_path / "b.pt"))["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        comfy.utils.load_torch_file(str(tmp_path / "evil.pt"))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_common_upscale_methods_and_center_crop(shims, method) -> None:
    import comfy.utils

    samples = torch.rand(2, 3, 10, 20)
    out = comfy.utils.common_upscale(samples, 8, 8, method, "center")
    assert out.shape == (2, 3, 8, 8)
    flat = torch.full((1, 3, 6, 6), 0.25)
    assert torch.allclose(comfy.utils.common_upscale(flat, 12, 3, method, "disabled"), torch.full((1, 3, 3, 12), 0.25),
                          atol=1 / 255)


def test_center_crop_keeps_the_middle(shims) -> None:
    import comfy.utils

    samples = torch.zeros(1, 1, 4, 8)
    samples[..., 2:6] = 1.0  # the middle square
    out = comfy.utils.common_upscale(samples, 4, 4, "nearest-exact", "center")
    assert torch.equal(out, torch.ones(1, 1, 4, 4))


def test_node_helpers_and_samplers(shims) -> None:
    import comfy.samplers
    import node_helpers

    cond = [[torch.zeros(1, 2, 3), {"strength": 1.0, "area": [1]}]]
    out = node_helpers.conditioning_set_values(cond, {"strength": 0.5, "area": [2]}, append=True)
    assert out[0][1] == {"strength": 0.5, "area": [1, 2]} and cond[0][1] == {"strength": 1.0, "area": [1]}
    assert "euler" in comfy.samplers.KSampler.SAMPLERS
    assert comfy.samplers.sampler_object("euler").sampler_name == "euler"
    with pytest.raises(ValueError, match="unknown sampler"):
        comfy.samplers.sampler_object("no_such_sampler")

    class Schedule:
        sigma_min, sigma_max = 0.03, 14.6

        def timestep(self, sigma):
            return sigma

        def sigma(self, t):
            return t

    sigmas = comfy.samplers.calculate_sigmas(Schedule(), "karras", 4)
    assert sigmas.shape == (5,) and float(sigmas[-1]) == 0.0 and abs(float(sigmas[0]) - 14.6) < 1e-4


def test_v3_ui_preview_image_saves_to_temp(shims) -> None:
    import folder_paths
    from comfy_api.latest import ui

    result = ui.PreviewImage(torch.rand(2, 4, 6, 3)).as_dict()
    images = result["images"]
    assert [i["type"] for i in images] == ["temp", "temp"]
    from pathlib import Path

    from PIL import Image

    for item in images:
        path = Path(folder_paths.get_temp_directory()) / item["subfolder"] / item["filename"]
        assert Image.open(path).size == (6, 4)
    mask = ui.PreviewMask(torch.ones(1, 4, 6)).as_dict()["images"]
    assert len(mask) == 1
    assert ui.PreviewText("hi").as_dict() == {"text": ("hi",)}


@pytest.mark.parametrize(("tile", "overlap"), [(8, 2), (16, 4), (64, 8)])
def test_tiled_scale_equals_whole_image_scaling_for_a_pointwise_function(shims, tile, overlap) -> None:
    import comfy.utils

    samples = torch.rand(2, 3, 20, 28)

    def upscale(x: torch.Tensor) -> torch.Tensor:  # nearest x2 plus a colour map: tiles must blend exactly
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 0.5 + 0.25

    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    expected, bar = upscale(samples), Bar()
    out = comfy.utils.tiled_scale(samples, upscale, tile_x=tile, tile_y=tile, overlap=overlap, upscale_amount=2,
                                  pbar=bar)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)
    assert bar.n == 2 * comfy.utils.get_tiled_scale_steps(28, 20, tile, tile, overlap)  # per image, 2 images


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_stochastic_rounding_to_fp8_is_unbiased_and_lands_on_fp8_values(shims, dtype) -> None:
    import comfy.float

    x = torch.full((100_000,), 0.3)
    out = comfy.float.stochastic_rounding(x, dtype, seed=1)
    values = out.float()
    assert out.dtype == dtype and len(set(values.tolist())) == 2  # the two fp8 neighbours of 0.3
    assert abs(values.mean().item() - 0.3) < 1e-3  # nearest rounding alone would give 0.3125
    exact = torch.tensor([0.25, -2.0, 0.0])
    assert torch.equal(comfy.float.stochastic_rounding(exact, dtype).float(), exact)
    assert torch.equal(comfy.float.stochastic_rounding(x, dtype, seed=1), out)  # seeded
    assert comfy.float.stochastic_rounding(x, torch.float16).dtype == torch.float16


def test_manual_cast_layers_keep_comfyuis_contract(shims) -> None:
    """Packs subclass comfy.ops.manual_cast layers and override forward_comfy_cast_weights (GGUF's layers)."""
    import comfy.ops

    class Doubling(comfy.ops.manual_cast.Linear):
        def forward_comfy_cast_weights(self, input):
            return 2 * super().forward_comfy_cast_weights(input)

    layer = Doubling(3, 2).to(torch.float16)
    x = torch.randn(4, 3)
    plain = torch.nn.functional.linear(x, layer.weight.float(), layer.bias.float())
    assert torch.allclose(layer(x), 2 * plain)  # weights cast to the input's dtype, through the override
    layer.comfy_cast_weights = False
    assert torch.allclose(layer(x), plain)
    assert comfy.ops.cast_to(x, torch.float16, "cpu").dtype == torch.float16 and comfy.ops.cast_to(x) is x
