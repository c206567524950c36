"""ComfyUI's precision flags: parsed by app.config, resolved by engine.precision, and reaching the networks the
tiny checkpoint loads (dtypes of the UNet / VAE / text encoder parameters, the layers that compute)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from app.config import ConfigError, parse_args
from app.engine_factory import precision_flags
from engine import precision
from engine.device import DevicePolicy
from engine.handles import ModelHandle, VaeHandle
from engine.loading import load_checkpoint, load_unet
from engine.model_management import ModelManager
from engine.networks.ops import CpuBf16, ManualCast, Plain
from engine.precision import PrecisionFlags, resolve

F32, F16, BF16, F64 = torch.float32, torch.float16, torch.bfloat16, torch.float64
E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


@pytest.fixture(scope="module")
def ckpt(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors"


def _policy(*argv: str) -> DevicePolicy:
    return DevicePolicy.detect(cpu_only=True, flags=precision_flags(parse_args(list(argv))))


def _matrix_dtypes(module: nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.ndim >= 2}


def _vector_dtypes(module: nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.ndim < 2}


def _layer_types(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _run(model: ModelHandle, vae: VaeHandle, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    out = model.apply_model(x, torch.tensor([2.0]), cond)
    return out, vae.decode(out)


# (flags, unet matrices, unet vectors, unet compute, unet layer class, vae matrices, vae compute, text params)
CASES = [
    ((), {F32}, {F32}, F32, Plain, {F32}, F32, {F32}),
    (("--fp32-unet", "--fp32-vae", "--fp32-text-enc"), {F32}, {F32}, F32, Plain, {F32}, F32, {F32}),
    (("--fp64-unet",), {F64}, {F64}, F64, Plain, {F32}, F32, {F32}),
    (("--bf16-unet",), {BF16}, {F32}, F32, CpuBf16, {F32}, F32, {F32}),
    (("--fp16-unet",), {F16}, {F32}, F32, ManualCast, {F32}, F32, {F32}),
    (("--fp8_e4m3fn-unet",), {E4M3}, {F32}, F32, ManualCast, {F32}, F32, {F32}),
    (("--fp8_e5m2-unet",), {E5M2}, {F32}, F32, ManualCast, {F32}, F32, {F32}),
    (("--force-fp16",), {F16}, {F32}, F32, ManualCast, {F32}, F32, {F32}),
    (("--force-fp32", "--bf16-unet"), {BF16}, {F32}, F32, CpuBf16, {F32}, F32, {F32}),
    (("--bf16-vae",), {F32}, {F32}, F32, Plain, {BF16}, F32, {F32}),
    (("--fp16-vae",), {F32}, {F32}, F32, Plain, {F16}, F16, {F32}),
    (("--bf16-text-enc",), {F32}, {F32}, F32, Plain, {F32}, F32, {BF16}),
    (("--fp16-text-enc",), {F32}, {F32}, F32, Plain, {F32}, F32, {F16}),
    (("--cpu-vae", "--bf16-unet", "--bf16-vae", "--bf16-text-enc"), {BF16}, {F32}, F32, CpuBf16, {BF16},
     F32, {BF16}),
]


@pytest.mark.parametrize(("argv", "unet_m", "unet_v", "unet_c", "layer", "vae_m", "vae_c", "text"), CASES,
                         ids=[" ".join(c[0]) or "default" for c in CASES])
def test_flag_reaches_the_networks(ckpt: Path, argv: tuple[str, ...], unet_m: set[torch.dtype],
                                   unet_v: set[torch.dtype], unet_c: torch.dtype, layer: type,
                                   vae_m: set[torch.dtype], vae_c: torch.dtype, text: set[torch.dtype]) -> None:
    manager = ModelManager(_policy(*argv))
    model, clip, vae = load_checkpoint(ckpt, manager)
    assert clip is not None and vae is not None
    unet = model.diffusion_model
    assert _matrix_dtypes(unet) == unet_m and _vector_dtypes(unet) == unet_v
    assert model.dtype == unet_c
    assert _layer_types(unet) == {layer.Conv2d, layer.Linear}
    assert _matrix_dtypes(vae.vae) == vae_m and vae.dtype == vae_c
    if vae_m == {BF16}:  # norms stay fp32 beside bf16 convolutions
        assert _vector_dtypes(vae.vae) == {F32} and _layer_types(vae.vae) <= {CpuBf16.Conv2d, CpuBf16.Linear}
    assert {p.dtype for p in clip.encoders.parameters() if p.is_floating_point()} == text
    cond = clip.encode("a photo of a cat")[0][0]
    out, image = _run(model, vae, cond)
    assert out.dtype == F32 and image.dtype == F32  # the sampler's arithmetic stays fp32
    assert torch.isfinite(out).all() and torch.isfinite(image).all()


def test_bf16_on_the_cpu_stays_close_to_fp32(ckpt: Path) -> None:
    ref_model, ref_clip, ref_vae = load_checkpoint(ckpt, ModelManager(_policy()))
    model, _, vae = load_checkpoint(ckpt, ModelManager(_policy("--bf16-unet", "--bf16-vae")))
    assert ref_clip is not None and ref_vae is not None and vae is not None
    cond = ref_clip.encode("a photo of a cat")[0][0]
    ref_out, ref_img = _run(ref_model, ref_vae, cond)
    out, img = _run(model, vae, cond)
    rel = ((out - ref_out).norm() / ref_out.norm()).item()
    assert 0 < rel < 0.02, rel  # bf16 did run (not identical) and kept fp32-level structure
    mse = torch.mean((img - ref_img) ** 2).item()
    assert 0 < mse and 10 * torch.log10(torch.tensor(1.0 / mse)).item() > 30
    # the bf16 VAE runs channels-last (oneDNN's native bf16 conv layout); encode and tiled decode work on it
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in vae.vae.parameters() if p.ndim == 4)
    assert all(p.is_contiguous() for p in ref_vae.vae.parameters())
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    pixels = ref_vae.decode(latent)
    enc, ref_enc = vae.encode(pixels), ref_vae.encode(pixels)
    assert ((enc - ref_enc).norm() / ref_enc.norm()).item() < 0.05
    tiled, ref_tiled = vae.decode_tiled(latent, tile=8, overlap=2), ref_vae.decode_tiled(latent, tile=8, overlap=2)
    assert tiled.shape == ref_tiled.shape and torch.mean((tiled - ref_tiled) ** 2).item() < 1e-3


def test_unet_loader_weight_dtype_wins_over_the_flag(ckpt: Path) -> None:
    """ComfyUI: UNETLoader's weight_dtype (per prompt) overrides --*-unet."""
    manager = ModelManager(_policy("--bf16-unet"))
    model = load_unet(ckpt, manager, dtype=E4M3)
    assert _matrix_dtypes(model.diffusion_model) == {E4M3}
    assert _layer_types(model.diffusion_model) == {ManualCast.Conv2d, ManualCast.Linear}
    assert model.dtype == F32
    plain = load_unet(ckpt, manager)
    assert _matrix_dtypes(plain.diffusion_model) == {BF16}


def test_cpu_vae_moves_only_the_vae() -> None:
    flags = precision_flags(parse_args(["--cpu-vae"]))
    gpu = torch.device("cuda", 0)
    policy = DevicePolicy.from_precision(gpu, resolve(flags, gpu, bf16_supported=True))
    assert policy.device_for("vae") == torch.device("cpu")
    assert policy.device_for("unet") == gpu and policy.device_for("clip") == gpu
    assert policy.vae_dtype == F32 and policy.unet_dtype == F16  # a CPU VAE computes in fp32 (ComfyUI)


@pytest.mark.parametrize(("argv", "unet", "storage", "vae", "text"), [
    ((), F16, None, BF16, F16),
    (("--force-fp32",), F32, None, F32, F32),
    (("--bf16-unet",), BF16, None, BF16, F16),
    (("--fp32-unet", "--force-fp16"), F32, None, BF16, F16),
    (("--fp8_e4m3fn-unet",), F16, E4M3, BF16, F16),
    (("--fp16-vae", "--fp32-text-enc"), F16, None, F16, F32),
])
def test_gpu_resolution_follows_comfyui(argv: tuple[str, ...], unet: torch.dtype, storage: torch.dtype | None,
                                        vae: torch.dtype, text: torch.dtype) -> None:
    res = resolve(precision_flags(parse_args(list(argv))), torch.device("cuda", 0), bf16_supported=True)
    assert (res.unet.compute, res.unet.storage, res.vae.compute, res.text.compute) == (unet, storage, vae, text)
    assert not res.unet.bf16_ops and not res.vae.bf16_ops  # bf16 operators are a CPU-only choice


def test_bf16_without_avx512_bf16_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with caplog.at_level(logging.WARNING, logger="loom.precision"):
        res = resolve(PrecisionFlags(unet="bf16"), torch.device("cpu"))
    assert res.unet.bf16_ops and "slower" in res.unet.reason
    assert any("SLOWER than fp32" in r.getMessage() for r in caplog.records)


def test_cpu_flags_are_read_from_proc() -> None:
    flags = precision.cpu_flags()
    if Path("/proc/cpuinfo").exists():
        assert "fpu" in flags or "neon" in flags or "asimd" in flags or "fp" in flags
    assert precision.cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("argv", [("--bf16-unet", "--fp16-unet"), ("--force-fp32", "--force-fp16"),
                                  ("--fp16-vae", "--bf16-vae"), ("--fp16-text-enc", "--fp32-text-enc")])
def test_one_choice_per_network(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse_args(list(argv))


@pytest.mark.parametrize("flag", ["--fp8_e4m3fn-text-enc", "--fp8_e5m2-text-enc", "--fp8_e8m0fnu-unet"])
def test_unsupported_flags_say_so(flag: str) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        parse_args([flag])


def test_config_carries_the_flags() -> None:
    cfg = parse_args(["--bf16-unet", "--fp32-vae", "--bf16-text-enc", "--cpu-vae", "--force-fp32"])
    assert (cfg.unet_precision, cfg.vae_precision, cfg.text_enc_precision) == ("bf16", "fp32", "bf16")
    assert cfg.cpu_vae and cfg.force_fp32 and not cfg.force_fp16
    assert parse_args([]).unet_precision is None
