"""Loading the tiny SD1.5 checkpoint, split UNet/CLIP/VAE files, caching and loader errors."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.device import DevicePolicy
from engine.errors import CheckpointError, UnknownModelError, UnsafeCheckpointError
from engine.loading import load_checkpoint, load_clip, load_unet, load_vae
from engine.model_management import ModelManager

GOLDEN = "tiny-sd15/golden/txt2img__euler__normal"


@pytest.fixture()
def manager() -> ModelManager:
    return ModelManager(DevicePolicy.cpu())


@pytest.fixture(scope="module")
def ckpt(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors"


def test_checkpoint_gives_three_handles(ckpt: Path, manager: ModelManager, fixtures_dir: Path) -> None:
    model, clip, vae = load_checkpoint(ckpt, manager)
    assert model.family.name == "sd15"
    assert model.in_channels == 4 and model.context_dim == 32
    assert model.latent_format.scale_factor == pytest.approx(0.18215)
    assert model.model_sampling.prediction == "eps"
    cfg = model.diffusion_model.config
    assert cfg.channel_mult == (1, 2, 4, 4) and cfg.num_res_blocks == (2, 2, 2, 2)
    assert cfg.transformer_depth == (1, 1, 1, 1, 1, 1, 0, 0) and not cfg.use_linear_in_transformer
    assert clip is not None and vae is not None
    assert clip.encoder.config.num_attention_heads == 2  # from the file's metadata config
    ref = np.load(fixtures_dir / f"{GOLDEN}.cond.npy")
    cond = clip.encode("a photo of a cat")[0][0].numpy()
    assert np.abs(cond - ref).max() / np.abs(ref).max() <= 1e-4


def test_same_file_is_loaded_once(ckpt: Path, manager: ModelManager) -> None:
    m1, _, _ = load_checkpoint(ckpt, manager)
    m2, _, _ = load_checkpoint(ckpt, manager)
    assert m1 is not m2
    assert m1.diffusion_model is m2.diffusion_model
    assert len(manager.loaded_models()) == 3


def test_changed_file_is_loaded_again(ckpt: Path, manager: ModelManager, tmp_path: Path) -> None:
    copy = tmp_path / "c.safetensors"
    copy.write_bytes(ckpt.read_bytes())
    m1, _, _ = load_checkpoint(copy, manager)
    import os

    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    m2, _, _ = load_checkpoint(copy, manager)
    assert m1.diffusion_model is not m2.diffusion_model


def _split(ckpt: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    sd = load_file(str(ckpt))
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        meta = dict(f.metadata())
    parts = {
        "unet": ("model.diffusion_model.", ""),
        "clip": ("cond_stage_model.transformer.", ""),
        "vae": ("first_stage_model.", ""),
    }
    out = []
    for name, (prefix, new) in parts.items():
        path = tmp_path / f"tiny-sd15-{name}.safetensors"
        save_file({new + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, str(path), meta)
        out.append(path)
    return out[0], out[1], out[2]


def test_split_loaders_equal_single_file(ckpt: Path, manager: ModelManager, tmp_path: Path,
                                         fixtures_dir: Path) -> None:
    unet_p, clip_p, vae_p = _split(ckpt, tmp_path)
    model = load_unet(unet_p, manager)
    clip = load_clip(clip_p, "stable_diffusion", manager=manager)
    vae = load_vae(vae_p, manager)
    full_model, full_clip, full_vae = load_checkpoint(ckpt, manager)
    assert full_clip is not None and full_vae is not None
    x = torch.randn(1, 4, 8, 16)
    ctx = torch.randn(1, 77, 32)
    sigma = torch.tensor([3.0])
    # same weights, but mmapped at other file offsets: BLAS may take other (alignment-dependent) code paths,
    # so allow last-bit differences (measured up to 3.7e-6 on one CPU)
    torch.testing.assert_close(model.apply_model(x, sigma, ctx), full_model.apply_model(x, sigma, ctx),
                               rtol=1e-5, atol=1e-5)
    golden = fixtures_dir / "families/golden/comfy__sd15__split_loaders__euler__normal"
    meta = json.loads(Path(f"{golden}.json").read_text())
    tokens = meta["text_encodes"]["2"]["tokens"]["l"]
    cond, pooled = clip.encode_from_tokens({"l": [[(t, 1.0) for t in w] for w in tokens]}, return_pooled=True)
    ref = np.load(f"{golden}.cond.npy")
    ref_pooled = np.load(f"{golden}.cond_pooled.npy")
    assert np.abs(cond.numpy() - ref).max() / np.abs(ref).max() <= 1e-4
    assert np.abs(pooled.numpy() - ref_pooled).max() / np.abs(ref_pooled).max() <= 1e-4
    lat = torch.from_numpy(np.load(f"{golden}.latent.npy"))
    img = np.load(f"{golden}.image.npy")
    assert np.abs(vae.decode(lat).numpy() - img).max() <= 1e-4
    torch.testing.assert_close(vae.decode(lat), full_vae.decode(lat), rtol=1e-5, atol=1e-5)


def test_ckpt_weights_only_loads(ckpt: Path, manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(ckpt))}, p)
    model, clip, vae = load_checkpoint(p, manager, output_clip=False)
    assert model.family.name == "sd15" and clip is None and vae is not None
    # without metadata the CLIP head count falls back to CLIP-L's 12, which 32 channels cannot hold
    with pytest.raises(UnknownModelError, match=r"tiny\.ckpt.*not divisible by 12 heads"):
        load_checkpoint(p, manager)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would run code",))


def test_pickle_with_code_is_refused(manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Evil()}, p)
    with pytest.raises(UnsafeCheckpointError, match="evil.ckpt"):
        load_checkpoint(p, manager)


def test_legacy_pickle_with_code_is_refused(manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "old.pt"
    with open(p, "wb") as f:
        pickle.dump({"payload": _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match="old.pt"):
        load_unet(p, manager)


def test_truncated_safetensors_named(ckpt: Path, manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "cut.safetensors"
    p.write_bytes(ckpt.read_bytes()[: 1_000_000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors.*(corrupt|truncated)"):
        load_checkpoint(p, manager)


def test_corrupt_header_named(manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_vae(p, manager)


def test_truncated_ckpt_named(ckpt: Path, manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "half.ckpt"
    torch.save({"a": torch.zeros(10000)}, p)
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match="half.ckpt"):
        load_checkpoint(p, manager)


def test_unknown_layout_lists_findings_and_families(manager: ModelManager, tmp_path: Path) -> None:
    p = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}, str(p))
    with pytest.raises(UnknownModelError) as err:
        load_checkpoint(p, manager)
    msg = str(err.value)
    assert "other.safetensors" in msg and "encoder.layer" in msg and "sd15" in msg


def test_missing_file(manager: ModelManager, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors", manager)


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="torch without float8")
def test_fp8_weight_storage_runs_close_to_fp32(ckpt: Path, manager: ModelManager, tmp_path: Path) -> None:
    sd = load_file(str(ckpt))
    path = tmp_path / "unet.safetensors"
    save_file({k[22:]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")}, str(path))
    fp8 = load_unet(path, manager, dtype=torch.float8_e4m3fn)
    full = load_unet(path, manager)
    weight = dict(fp8.diffusion_model.named_parameters())["input_blocks.1.1.proj_in.weight"]
    assert weight.dtype == torch.float8_e4m3fn and fp8.dtype == torch.float32
    x, ctx, sigma = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32), torch.tensor([2.0])
    a, b = fp8.apply_model(x, sigma, ctx), full.apply_model(x, sigma, ctx)
    assert not torch.equal(a, b)
    assert float((a - b).abs().max() / b.abs().max()) < 0.2
