"""Sampler hooks (model_options) and the nodes that set them, on the tiny SD1.5 checkpoint (tests/fixtures)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.sampling import sample

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
SHAPE = (1, 4, 8, 8)
CFG = 5.0
POST_CFG_KEYS = {"denoised", "cond", "uncond", "cond_scale", "model", "uncond_denoised", "cond_denoised", "sigma",
                 "model_options", "input"}
CFG_FN_KEYS = {"cond", "uncond", "cond_scale", "timestep", "input", "sigma", "cond_denoised", "uncond_denoised",
               "model", "model_options"}


@pytest.fixture(scope="module")
def model() -> Any:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    return load_checkpoint(FIX / "tiny-sd15.safetensors", manager, output_clip=False, output_vae=False)[0]


def conds() -> tuple[list[Any], list[Any]]:
    g = torch.Generator().manual_seed(3)
    return [[torch.randn(1, 77, 32, generator=g), {}]], [[torch.randn(1, 77, 32, generator=g), {}]]


def run(m: Any, steps: int = 4, cfg: float = CFG, latent: torch.Tensor | None = None, scheduler: str = "normal",
        **kw: Any) -> torch.Tensor:
    pos, neg = conds()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    latent = torch.zeros(SHAPE) if latent is None else latent
    return sample(m, noise, steps, cfg, "euler", scheduler, pos, neg, latent, seed=7, **kw)


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_catalogue_lists_model_patch_nodes(registry: Any) -> None:
    info = registry.object_info()
    r = info["RescaleCFG"]
    assert r["input"]["required"] == {"model": ["MODEL"],
                                      "multiplier": ["FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01}]}
    assert r["output"] == ["MODEL"] and r["category"] == "advanced/model" and r["display_name"] == "RescaleCFG"
    d = info["DifferentialDiffusion"]
    assert d["input"]["required"] == {"model": ["MODEL"]}
    assert d["input"]["optional"] == {"strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}
    assert d["output"] == ["MODEL"] and d["display_name"] == "Differential Diffusion"
    assert d["category"] == "_for_testing" and d.get("experimental") is True


def test_setters_store_hooks_on_the_clone_only(model: Any) -> None:
    m = model.clone()
    m.set_model_sampler_post_cfg_function(lambda a: a["denoised"])
    m.set_model_sampler_cfg_function(lambda a: a["cond"], disable_cfg1_optimization=True)
    m.set_model_denoise_mask_function(lambda s, mask, extra_options: mask)
    m2 = m.clone()
    m2.set_model_sampler_post_cfg_function(lambda a: a["denoised"])
    assert len(m.model_options["sampler_post_cfg_function"]) == 1
    assert len(m2.model_options["sampler_post_cfg_function"]) == 2
    assert m.model_options["disable_cfg1_optimization"] is True
    for key in ("sampler_post_cfg_function", "sampler_cfg_function", "denoise_mask_function"):
        assert key not in model.model_options


def test_rescale_cfg_multiplier_zero_is_plain_cfg(registry: Any, model: Any) -> None:
    (patched,) = call(registry, "RescaleCFG", model=model, multiplier=0.0)
    assert "sampler_cfg_function" not in model.model_options
    plain = run(model)
    # same formula carried through v space and back: equal up to float rounding
    assert rel(run(patched), plain) < 1e-5


def test_rescale_cfg_multiplier_one_changes_the_result(registry: Any, model: Any) -> None:
    (patched,) = call(registry, "RescaleCFG", model=model, multiplier=1.0)
    assert rel(run(patched), run(model)) > 1e-3


def v_prediction(x: torch.Tensor, x0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """v = alpha * eps - sigma_vp * x0 for x = x0 + s * eps (Salimans & Ho 2022)."""
    eps = (x - x0) / s
    return eps / (1 + s * s) ** 0.5 - x0 * s / (1 + s * s) ** 0.5


@pytest.mark.parametrize("multiplier", [0.0, 0.7, 1.0])
def test_rescale_cfg_hook_rescales_std_in_v_space(registry: Any, model: Any, multiplier: float) -> None:
    (patched,) = call(registry, "RescaleCFG", model=model, multiplier=multiplier)
    hook = patched.model_options["sampler_cfg_function"]
    g = torch.Generator().manual_seed(0)
    x, c0, u0 = (torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64) for _ in range(3))
    c0 = c0 * 3.0
    sigma = torch.tensor([2.5, 0.4], dtype=torch.float64)
    args = {"cond": x - c0, "uncond": x - u0, "cond_scale": CFG, "timestep": sigma, "input": x, "sigma": sigma,
            "cond_denoised": c0, "uncond_denoised": u0, "model": patched, "model_options": patched.model_options}
    denoised = x - hook(args)
    s = sigma.view(2, 1, 1, 1)
    v_cond, v_uncond, v_out = (v_prediction(x, t, s) for t in (c0, u0, denoised))
    v_cfg = v_uncond + CFG * (v_cond - v_uncond)
    ratio = v_cond.std(dim=(1, 2, 3), keepdim=True) / v_cfg.std(dim=(1, 2, 3), keepdim=True)
    want = multiplier * v_cfg * ratio + (1 - multiplier) * v_cfg
    assert torch.allclose(v_out, want, atol=1e-9)
    if multiplier == 1.0:
        assert torch.allclose(v_out.std(dim=(1, 2, 3)), v_cond.std(dim=(1, 2, 3)), rtol=1e-9)
    else:
        assert not torch.allclose(v_out.std(dim=(1, 2, 3)), v_cond.std(dim=(1, 2, 3)), rtol=1e-3)


def test_post_cfg_function_runs_once_per_step_with_documented_args(model: Any) -> None:
    seen: list[dict[str, Any]] = []

    def post(args: dict[str, Any]) -> torch.Tensor:
        seen.append(args)
        return args["denoised"]

    m = model.clone()
    m.set_model_sampler_post_cfg_function(post)
    out = run(m, steps=4)
    assert len(seen) == 4
    assert all(set(a) >= POST_CFG_KEYS for a in seen)
    a = seen[0]
    assert a["cond_scale"] == CFG and a["model"] is m
    # the run's copy of the model's options, with the schedule under transformer_options, as ComfyUI's guider passes
    opts = a["model_options"]
    assert opts is not m.model_options and opts["sampler_post_cfg_function"] == m.model_options["sampler_post_cfg_function"]
    assert len(opts["transformer_options"]["sample_sigmas"]) == 5  # 4 steps
    assert torch.allclose(a["denoised"], a["uncond_denoised"] + (a["cond_denoised"] - a["uncond_denoised"]) * CFG)
    assert a["sigma"].shape == (1,) and a["input"].shape == SHAPE
    assert [float(s["sigma"][0]) for s in seen] == sorted((float(s["sigma"][0]) for s in seen), reverse=True)
    assert torch.equal(out, run(model, steps=4))  # an identity hook changes nothing


def test_post_cfg_function_result_is_used(model: Any) -> None:
    m = model.clone()
    m.set_model_sampler_post_cfg_function(lambda a: a["denoised"] * 0.0)
    # euler's last step lands on the final x0 estimate, which the hook zeroes
    out = run(m, steps=2)
    assert out.abs().max() < 1e-5 and run(model, steps=2).abs().max() > 0.1


def test_cfg1_skips_uncond_unless_disabled(model: Any) -> None:
    seen: list[dict[str, Any]] = []
    m = model.clone()
    m.set_model_sampler_post_cfg_function(lambda a: seen.append(a) or a["denoised"])
    run(m, steps=1, cfg=1.0)
    assert seen[-1]["uncond"] is None and not torch.any(seen[-1]["uncond_denoised"])
    m.set_model_sampler_post_cfg_function(lambda a: a["denoised"], disable_cfg1_optimization=True)
    run(m, steps=1, cfg=1.0)
    assert seen[-1]["uncond"] is not None and torch.any(seen[-1]["uncond_denoised"])


def test_cfg_function_with_plain_formula_reproduces_plain_cfg(model: Any) -> None:
    seen: list[set[str]] = []

    def plain(args: dict[str, Any]) -> torch.Tensor:
        seen.append(set(args))
        uncond: torch.Tensor = args["uncond"]
        return uncond + (args["cond"] - uncond) * args["cond_scale"]

    m = model.clone()
    m.set_model_sampler_cfg_function(plain)
    want = run(model)
    assert rel(run(m), want) < 1e-5
    assert len(seen) == 4 and all(s >= CFG_FN_KEYS for s in seen)
    old_style = model.clone()
    old_style.set_model_sampler_cfg_function(lambda cond, uncond, cond_scale: uncond + (cond - uncond) * cond_scale)
    assert rel(run(old_style), want) < 1e-5
    scaled = model.clone()
    scaled.set_model_sampler_cfg_function(lambda a: a["uncond"] + (a["cond"] - a["uncond"]) * 2.0)
    assert rel(run(scaled), want) > 1e-3


def half_mask() -> torch.Tensor:
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 32:] = 1.0
    return mask


def init_latent() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))


def test_differential_diffusion_all_ones_mask_is_plain_sampling(registry: Any, model: Any) -> None:
    (dd,) = call(registry, "DifferentialDiffusion", model=model)
    latent = init_latent()
    plain = run(model, latent=latent, denoise=0.8)
    assert torch.equal(run(dd, latent=latent, denoise=0.8, noise_mask=torch.ones(1, 1, 64, 64)), plain)


def test_differential_diffusion_half_mask_keeps_unmasked_half(registry: Any, model: Any) -> None:
    (dd,) = call(registry, "DifferentialDiffusion", model=model)
    latent = init_latent()
    # "simple" ends above sigma_min, so the threshold stays above 0 and mask-0 cells are never regenerated
    out = run(dd, latent=latent, denoise=0.8, noise_mask=half_mask(), scheduler="simple")
    assert torch.allclose(out[..., :4], latent[..., :4], atol=1e-5)
    assert (out[..., 4:] - latent[..., 4:]).abs().max() > 0.1
    plain_masked = run(model, latent=latent, denoise=0.8, noise_mask=half_mask(), scheduler="simple")
    assert torch.equal(out, plain_masked)  # a binary mask is already its own threshold


def test_differential_diffusion_regenerates_everything_at_sigma_min(registry: Any, model: Any) -> None:
    (dd,) = call(registry, "DifferentialDiffusion", model=model)
    latent = init_latent()
    # "normal" ends at sigma_min: the threshold reaches 0 on the last step, so the kept half moves a little
    out = run(dd, latent=latent, denoise=0.8, noise_mask=half_mask())
    kept = (out[..., :4] - latent[..., :4]).abs().max()
    redone = (out[..., 4:] - latent[..., 4:]).abs().max()
    assert 1e-4 < kept < redone


def test_differential_diffusion_soft_mask_regenerates_late(registry: Any, model: Any) -> None:
    (dd,) = call(registry, "DifferentialDiffusion", model=model)
    latent = init_latent()
    soft = torch.full((1, 1, 64, 64), 0.5)
    with_dd = run(dd, latent=latent, denoise=0.8, noise_mask=soft)
    without = run(model, latent=latent, denoise=0.8, noise_mask=soft)
    full = run(model, latent=latent, denoise=0.8)
    assert rel(with_dd, without) > 1e-3 and rel(with_dd, full) > 1e-3


def test_differential_diffusion_threshold_follows_the_schedule(registry: Any, model: Any) -> None:
    from engine.sampling.guider import CFGDenoiser

    (dd,) = call(registry, "DifferentialDiffusion", model=model)
    fn = dd.model_options["denoise_mask_function"]
    ms = model.model_sampling
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])
    extra = {"model": CFGDenoiser(dd, [], [], CFG), "sigmas": sigmas}
    mask = torch.linspace(0.0, 1.0, 11).reshape(1, 1, 1, 11)
    ts = [float(ms.timestep(torch.tensor(s))) for s in (10.0, 5.0, 1.0)]
    t_last = float(ms.timestep(ms.sigma_min))
    for s, t in zip((10.0, 5.0, 1.0), ts, strict=True):
        threshold = (t - t_last) / (ts[0] - t_last)
        got = fn(torch.tensor([s]), mask, extra_options=extra)
        assert torch.equal(got, (mask >= threshold).float())
    assert torch.equal(fn(torch.tensor([10.0]), mask, extra_options=extra), (mask >= 1.0).float())
    (half,) = call(registry, "DifferentialDiffusion", model=model, strength=0.25)
    got = half.model_options["denoise_mask_function"](torch.tensor([10.0]), mask, extra_options=extra)
    assert torch.allclose(got, 0.25 * (mask >= 1.0).float() + 0.75 * mask)
