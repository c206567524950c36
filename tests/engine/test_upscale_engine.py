"""Upscale models: layout / scale detection, loading through the safe reader, reference forwards, tiling."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from engine.device import DevicePolicy
from engine.errors import UnknownModelError, UnsafeCheckpointError
from engine.model_management import ModelManager
from engine.networks.upscalers import RRDBNet, SRVGGNetCompact
from engine.state_files import read_shapes
from engine.tiling import tile_positions
from engine.upscale import detect_upscaler, load_upscale_model, tiled_scale


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield None
    torch.set_num_threads(before)


@pytest.fixture()
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.cpu())


def rrdb_sd(upsamples: int = 2, unshuffle: int = 1, blocks: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random new-layout (BasicSR) RRDBNet state dict, nf=8, gc=4; weights scaled up so outputs are lively."""
    torch.manual_seed(seed)
    sd = RRDBNet(3, 3, 8, blocks, 4, upsamples, unshuffle).state_dict()
    return {k: (v * 2.0).contiguous() for k, v in sd.items()}


def to_old_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """New-layout keys -> the original ESRGAN ``model.N`` layout (written independently of the loader)."""
    ups = len({k.split(".")[0] for k in sd if k.startswith("conv_up")})
    blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_hr": f"model.{2 + 3 * ups}",
           "conv_last": f"model.{4 + 3 * ups}"}
    top.update({f"conv_up{i + 1}": f"model.{3 + 3 * i}" for i in range(ups)})
    out = {}
    for k, v in sd.items():
        m = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", k)
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = v
        else:
            module, param = k.rsplit(".", 1)
            out[f"{top[module]}.{param}"] = v
    return out


def old_esrgan_reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ESRGAN's forward written directly over the old-layout keys with F.conv2d."""
    def conv(prefix: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, sd[prefix + ".weight"], sd[prefix + ".bias"], padding=1)

    def lrelu(t: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(t, 0.2)

    top = sorted({int(k.split(".")[1]) for k in sd if re.fullmatch(r"model\.\d+\.weight", k)})
    blocks = sorted({int(k.split(".")[3]) for k in sd if ".RDB1.conv1.0.weight" in k})
    fea = conv("model.0", x)
    t = fea
    for b in blocks:
        block_in = t
        for r in (1, 2, 3):
            p = f"model.1.sub.{b}.RDB{r}"
            feats = [t]
            for c in (1, 2, 3, 4):
                feats.append(lrelu(conv(f"{p}.conv{c}.0", torch.cat(feats, 1))))
            t = conv(f"{p}.conv5.0", torch.cat(feats, 1)) * 0.2 + t
        t = t * 0.2 + block_in
    t = fea + conv(f"model.1.sub.{len(blocks)}", t)
    for idx in top[1:-2]:
        t = lrelu(conv(f"model.{idx}", F.interpolate(t, scale_factor=2, mode="nearest")))
    return conv(f"model.{top[-1]}", lrelu(conv(f"model.{top[-2]}", t)))


def srvgg_sd(scale: int = 4, num_conv: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = SRVGGNetCompact(3, 3, 8, num_conv, scale)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def srvgg_reference(sd: dict[str, torch.Tensor], x: torch.Tensor, scale: int) -> torch.Tensor:
    """SRVGGNetCompact's forward from the state dict: conv / PReLU pairs, last conv, pixel shuffle, + nearest."""
    last = max(int(k.split(".")[1]) for k in sd)
    t = x
    for i in range(0, last + 1, 2):
        t = F.conv2d(t, sd[f"body.{i}.weight"], sd[f"body.{i}.bias"], padding=1)
        if i < last:
            t = F.prelu(t, sd[f"body.{i + 1}.weight"])
    return F.pixel_shuffle(t, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


def save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(sd, str(path))
    return path


# ------------------------------------------------------------------------------------------ detection
@pytest.mark.parametrize(("ups", "unshuffle", "scale"), [(2, 1, 4), (1, 1, 2), (3, 1, 8), (0, 1, 1), (2, 2, 2),
                                                          (2, 4, 1)])
def test_rrdb_new_layout_scale_and_output_shape(tmp_path: Path, manager: ModelManager, ups: int, unshuffle: int,
                                                scale: int) -> None:
    sd = rrdb_sd(ups, unshuffle, blocks=2)
    spec = detect_upscaler(read_shapes(sd), "x.safetensors")
    assert (spec.architecture, spec.layout, spec.scale) == ("ESRGAN", "new", scale)
    assert (spec.num_blocks, spec.num_feat, spec.growth, spec.unshuffle) == (2, 8, 4, unshuffle)
    assert (spec.in_channels, spec.out_channels) == (3, 3)
    model = load_upscale_model(save(sd, tmp_path / "m.safetensors"), manager)
    image = torch.rand(1, 13, 10, 3)  # odd height: the unshuffle models pad and crop
    out = model.upscale(image)
    assert out.shape == (1, 13 * scale, 10 * scale, 3)
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("ups", [0, 1, 2, 3])
def test_old_layout_matches_reference_forward(tmp_path: Path, manager: ModelManager, ups: int) -> None:
    old = to_old_layout(rrdb_sd(ups, blocks=2, seed=ups))
    assert "model.1.sub.0.RDB1.conv1.0.weight" in old and "model.1.sub.2.weight" in old
    spec = detect_upscaler(read_shapes(old), "old.safetensors")
    assert (spec.layout, spec.scale, spec.num_blocks, spec.growth) == ("old", 2 ** ups, 2, 4)
    model = load_upscale_model(save(old, tmp_path / "old.safetensors"), manager)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        expected = old_esrgan_reference(old, x)
    got = model(x)
    assert got.shape == (1, 3, 9 * 2 ** ups, 11 * 2 ** ups)
    assert expected.abs().max() > 1e-2  # a lively output, so the comparison means something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_trunk_layout_equals_new_layout(tmp_path: Path, manager: ModelManager) -> None:
    sd = rrdb_sd(2, blocks=1)
    names = {"body.": "RRDB_trunk.", "conv_body.": "trunk_conv.", "conv_up1.": "upconv1.", "conv_up2.": "upconv2.",
             "conv_hr.": "HRconv."}
    trunk = {}
    for k, v in sd.items():
        for new, old in names.items():
            if k.startswith(new):
                k = old + k[len(new):]
        trunk[re.sub(r"\.rdb(\d)\.", r".RDB\1.", k)] = v
    assert "RRDB_trunk.0.RDB2.conv3.weight" in trunk
    spec = detect_upscaler(read_shapes(trunk), "t")
    assert (spec.layout, spec.scale) == ("trunk", 4)
    a = load_upscale_model(save(trunk, tmp_path / "trunk.safetensors"), manager)
    b = load_upscale_model(save(sd, tmp_path / "new.safetensors"), manager)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(a(x), b(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_srvgg_compact_matches_manual_forward(tmp_path: Path, manager: ModelManager, scale: int) -> None:
    sd = srvgg_sd(scale, num_conv=3)
    spec = detect_upscaler(read_shapes(sd), "c")
    assert (spec.architecture, spec.scale, spec.num_blocks, spec.num_feat) == ("RealESRGAN-Compact", scale, 3, 8)
    model = load_upscale_model(save(sd, tmp_path / "compact.safetensors"), manager)
    x = torch.rand(2, 3, 7, 12)
    torch.testing.assert_close(model(x), srvgg_reference(sd, x, scale), atol=1e-5, rtol=1e-5)
    assert model.upscale(x.movedim(1, -1)).shape == (2, 7 * scale, 12 * scale, 3)


def test_pth_goes_through_the_weights_only_reader(tmp_path: Path, manager: ModelManager) -> None:
    sd = rrdb_sd(1)
    path = tmp_path / "RealESRGAN_x2.pth"
    torch.save({"params_ema": sd}, path)  # Real-ESRGAN's release wrapping
    model = load_upscale_model(path, manager)
    assert (model.scale, model.architecture) == (2, "ESRGAN")
    ref = load_upscale_model(save(sd, tmp_path / "same.safetensors"), manager)
    x = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(model(x), ref(x))

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"params_ema": sd, "x": Evil()}, bad)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_upscale_model(bad, manager)


def test_unknown_layout_names_the_file(tmp_path: Path, manager: ModelManager) -> None:
    path = save({"encoder.proj.weight": torch.zeros(4, 4), "encoder.proj.bias": torch.zeros(4)},
                tmp_path / "mystery.safetensors")
    with pytest.raises(UnknownModelError) as err:
        load_upscale_model(path, manager)
    assert "mystery.safetensors" in str(err.value) and "encoder.proj" in str(err.value)
    # right layout, wrong contents (an ESRGAN+ style extra conv): the strict load names it
    sd = rrdb_sd(2)
    sd["body.0.rdb1.conv1x1.weight"] = torch.zeros(4, 8, 1, 1)
    with pytest.raises(UnknownModelError, match=r"plus\.safetensors.*conv1x1"):
        load_upscale_model(save(sd, tmp_path / "plus.safetensors"), manager)


def test_loader_caches_per_file_and_registers_with_manager(tmp_path: Path, manager: ModelManager) -> None:
    path = save(srvgg_sd(), tmp_path / "c.safetensors")
    a = load_upscale_model(path, manager)
    assert load_upscale_model(path, manager) is a
    assert [m["kind"] for m in manager.loaded_models()] == ["upscale"]
    assert a.to("cpu") is a and a.device.type == "cpu"


# --------------------------------------------------------------------------------------------- tiling
def test_tile_positions_follow_comfyui() -> None:
    assert tile_positions(300, 512, 32) == [(0, 300)]
    assert tile_positions(600, 512, 32) == [(0, 512), (480, 120)]
    assert tile_positions(100, 40, 8) == [(0, 40), (32, 40), (64, 36)]


def test_tiled_equals_untiled_when_the_tile_covers(tmp_path: Path, manager: ModelManager) -> None:
    model = load_upscale_model(save(rrdb_sd(2), tmp_path / "m.safetensors"), manager)
    x = torch.rand(1, 3, 40, 56)
    full = model(x)
    tiled = tiled_scale(model, x, 64, 32, 4, 3)
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("tile", "overlap"), [(24, 8), (32, 16)])
def test_small_tiles_stay_close_without_seams(tmp_path: Path, manager: ModelManager, tile: int,
                                              overlap: int) -> None:
    model = load_upscale_model(save(srvgg_sd(2, num_conv=1), tmp_path / "c.safetensors"), manager)
    x = torch.rand(1, 3, 50, 70)
    full = model(x)
    steps: list[tuple[int, int]] = []
    tiled = tiled_scale(model, x, tile, overlap, 2, 3, progress=lambda d, t: steps.append((d, t)))
    n = len(tile_positions(50, tile, overlap)) * len(tile_positions(70, tile, overlap))
    assert n > 4 and steps == [(i + 1, n) for i in range(n)]
    diff = (tiled - full).abs()
    span = full.abs().max()
    # only pixels within the receptive field (3 convs) of a tile edge differ, and the feather weighs them low
    assert diff.max() < 0.05 * span and diff.mean() < 3e-3 * span
    # no seam: the error along tile boundaries is no larger than elsewhere by much
    for y0, _ in tile_positions(50, tile, overlap)[1:]:
        assert diff[..., y0 * 2, :].mean() < 5e-3 * span


def test_upscale_halves_the_tile_on_out_of_memory(tmp_path: Path, manager: ModelManager) -> None:
    model = load_upscale_model(save(srvgg_sd(2, num_conv=0), tmp_path / "c.safetensors"), manager)
    net = model.model
    sides: list[int] = []
    real_forward = net.forward

    def tight(x: torch.Tensor) -> torch.Tensor:
        sides.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 128:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(x)

    net.forward = tight  # type: ignore[method-assign]
    image = torch.rand(1, 300, 200, 3)
    out = model.upscale(image)
    assert out.shape == (1, 600, 400, 3)
    assert sides[0] == 300 and 256 in sides and max(sides[sides.index(128):]) == 128
    torch.testing.assert_close(out, srvgg_reference(srvgg_sd(2, num_conv=0), image.movedim(-1, 1), 2)
                               .clamp(0, 1).movedim(1, -1), atol=0.05, rtol=0)

    def always(x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    net.forward = always  # type: ignore[method-assign]
    with pytest.raises(torch.OutOfMemoryError):
        model.upscale(image)


def test_image_channels_are_matched(tmp_path: Path, manager: ModelManager) -> None:
    model = load_upscale_model(save(srvgg_sd(2), tmp_path / "c.safetensors"), manager)
    rgba = torch.rand(1, 8, 8, 4)
    torch.testing.assert_close(model.upscale(rgba), model.upscale(rgba[..., :3]))
    with pytest.raises(ValueError, match="3-channel"):
        model.upscale(torch.rand(1, 8, 8, 2))
