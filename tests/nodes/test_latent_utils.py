"""LatentCut / LatentConcat and the latent operations, checked against numpy computations written here."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch


def _run(registry: Any, name: str, **inputs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    assert info["LatentCut"]["category"] == info["LatentConcat"]["category"] == "latent/advanced"
    assert info["LatentCut"]["input"]["required"]["dim"][0] == ["x", "y", "t"]
    assert info["LatentConcat"]["input"]["required"]["dim"][0] == ["x", "-x", "y", "-y", "t", "-t"]
    assert info["LatentCut"]["input"]["required"]["index"][1] == {"default": 0, "min": -16384, "max": 16384,
                                                                  "step": 1}
    for name in ("LatentApplyOperation", "LatentApplyOperationCFG", "LatentOperationSharpen",
                 "LatentOperationTonemapReinhard"):
        assert info[name]["category"] == "latent/advanced/operations" and info[name]["experimental"] is True
    assert info["LatentOperationSharpen"]["output"] == ["LATENT_OPERATION"]
    assert info["LatentApplyOperationCFG"]["output"] == ["MODEL"]
    assert info["LatentOperationSharpen"]["input"]["required"]["sharpen_radius"][1]["default"] == 9


def test_latent_cut(registry: Any) -> None:
    s = torch.arange(2 * 4 * 3 * 5, dtype=torch.float32).reshape(2, 4, 3, 5)
    mask = torch.ones(1, 1, 24, 40)
    latent = {"samples": s, "noise_mask": mask}
    (out,) = _run(registry, "LatentCut", samples=latent, dim="x", index=1, amount=2)
    assert torch.equal(out["samples"], s[..., 1:3]) and out["noise_mask"] is mask
    (tail,) = _run(registry, "LatentCut", samples=latent, dim="x", index=-2, amount=5)
    assert torch.equal(tail["samples"], s[..., 3:5])
    (last,) = _run(registry, "LatentCut", samples=latent, dim="y", index=10, amount=4)
    assert torch.equal(last["samples"], s[:, :, 2:3])
    (lo,) = _run(registry, "LatentCut", samples=latent, dim="y", index=-10, amount=1)
    assert torch.equal(lo["samples"], s[:, :, 0:1])
    assert latent["samples"] is s  # input untouched


def test_latent_concat(registry: Any) -> None:
    a = torch.zeros(2, 4, 3, 5)
    b = torch.ones(1, 4, 3, 2)
    (x,) = _run(registry, "LatentConcat", samples1={"samples": a, "batch_index": [3, 4]}, samples2={"samples": b},
                dim="x")
    assert x["samples"].shape == (2, 4, 3, 7) and x["batch_index"] == [3, 4]
    assert torch.all(x["samples"][..., :5] == 0) and torch.all(x["samples"][..., 5:] == 1)
    (nx,) = _run(registry, "LatentConcat", samples1={"samples": a}, samples2={"samples": b}, dim="-x")
    assert torch.all(nx["samples"][..., :2] == 1) and torch.all(nx["samples"][..., 2:] == 0)
    (y,) = _run(registry, "LatentConcat", samples1={"samples": a}, samples2={"samples": torch.ones(3, 4, 1, 5)},
                dim="y")
    assert y["samples"].shape == (2, 4, 4, 5) and torch.all(y["samples"][:, :, 3] == 1)
    from nodes._base import NodeInputError
    with pytest.raises(NodeInputError, match="LatentConcat.*samples2"):
        _run(registry, "LatentConcat", samples1={"samples": a}, samples2={"samples": b}, dim="y")


def _np_reinhard(latent: np.ndarray, multiplier: float) -> np.ndarray:
    out = np.empty_like(latent)
    for i, item in enumerate(latent.astype(np.float64)):
        magnitude = np.sqrt((item ** 2).sum(axis=0)) + 1e-10
        top = (magnitude.std(ddof=1) * 5 + magnitude.mean()) * multiplier
        new = (magnitude / top) / (magnitude / top + 1.0) * top
        out[i] = item / magnitude * new
    return out


def test_tonemap_reinhard(registry: Any) -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 4, 6, 5, generator=gen) * 3
    (op,) = _run(registry, "LatentOperationTonemapReinhard", multiplier=0.7)
    (out,) = _run(registry, "LatentApplyOperation", samples={"samples": s}, operation=op)
    np.testing.assert_allclose(out["samples"].numpy(), _np_reinhard(s.numpy(), 0.7), rtol=1e-5, atol=1e-6)
    (loose,) = _run(registry, "LatentOperationTonemapReinhard", multiplier=100.0)
    assert torch.allclose(loose(latent=s), s, rtol=0.02)  # a far white point barely compresses


def _np_sharpen(latent: np.ndarray, radius: int, sigma: float, alpha: float) -> np.ndarray:
    size = 2 * radius + 1
    t = np.linspace(-1, 1, size)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    k = -10 * alpha * g / g.sum()
    k[radius, radius] += 1.0 - k.sum()
    out = np.empty_like(latent, dtype=np.float64)
    for b, item in enumerate(latent.astype(np.float64)):
        lum = np.sqrt((item ** 2).sum(axis=0)) + 1e-6
        norm = item / lum
        for c, plane in enumerate(norm):
            p = np.pad(plane, radius, mode="reflect")
            acc = np.zeros_like(plane)
            for dy in range(size):
                for dx in range(size):
                    acc += k[dy, dx] * p[dy:dy + plane.shape[0], dx:dx + plane.shape[1]]
            out[b, c] = acc * lum
    return out


def test_sharpen(registry: Any) -> None:
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(1, 4, 8, 7, generator=gen)
    (op,) = _run(registry, "LatentOperationSharpen", sharpen_radius=2, sigma=0.8, alpha=0.3)
    np.testing.assert_allclose(op(latent=s).numpy(), _np_sharpen(s.numpy(), 2, 0.8, 0.3), rtol=1e-4, atol=1e-5)
    (identity,) = _run(registry, "LatentOperationSharpen", sharpen_radius=3, sigma=1.0, alpha=0.0)
    assert torch.allclose(identity(latent=s), s, atol=1e-5)


def test_apply_operation_cfg_patches_a_clone(registry: Any, tiny_model: Any) -> None:
    (op,) = _run(registry, "LatentOperationTonemapReinhard", multiplier=0.5)
    before = list(tiny_model.model_options.get("sampler_pre_cfg_function", []))
    (patched,) = _run(registry, "LatentApplyOperationCFG", model=tiny_model, operation=op)
    assert patched is not tiny_model
    assert list(tiny_model.model_options.get("sampler_pre_cfg_function", [])) == before
    pre = patched.model_options["sampler_pre_cfg_function"][-1]
    gen = torch.Generator().manual_seed(2)
    cond, uncond = torch.randn(1, 4, 3, 3, generator=gen), torch.randn(1, 4, 3, 3, generator=gen)
    out = pre({"conds_out": [cond, uncond]})
    expected = _np_reinhard((cond - uncond).numpy(), 0.5) + uncond.numpy()
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out[1] is uncond
    (alone,) = pre({"conds_out": [cond, None]})[:1]
    np.testing.assert_allclose(alone.numpy(), _np_reinhard(cond.numpy(), 0.5), rtol=1e-5, atol=1e-6)
