"""Guidance hook functions (engine.sampling.guidance / guiders) and continuous model sampling, on hand-made
predictions where the expected result follows from the method's definition."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.sampling.guidance import (
    ApgPreCfg,
    cfg_norm,
    cfg_zero_star,
    epsilon_scaling,
    mahiro,
    perp_neg,
    renorm_cfg,
    tangential_damping_cfg,
)
from engine.sampling.guider import cfg_function
from engine.sampling.guiders import dual_cfg_function, perp_neg_cfg_function
from engine.sampling.model_sampling_continuous import (
    PLAYGROUND_V25,
    ModelSamplingContinuousEDM,
    ModelSamplingContinuousV,
)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def post_args(cond: torch.Tensor, uncond: torch.Tensor, scale: float, x: torch.Tensor) -> dict[str, Any]:
    return {"denoised": uncond + (cond - uncond) * scale, "cond_denoised": cond, "uncond_denoised": uncond,
            "cond_scale": scale, "input": x, "sigma": torch.tensor([1.0]), "timestep": torch.tensor([1.0])}


def test_cfg_zero_star_uses_the_optimised_scale() -> None:
    u = rand(1, 4, 8, 8)
    x = torch.zeros_like(u)
    # x - cond = -2u, x - uncond = -u: s* = 2, so out = CFG + u (s* - 1) + 3 u (1 - s*) = 4u + u - 3u = 2u
    assert torch.allclose(cfg_zero_star(post_args(2 * u, u, 3.0, x)), 2 * u, atol=1e-5)
    same = rand(1, 4, 8, 8, seed=1)
    args = post_args(same, same, 5.0, rand(1, 4, 8, 8, seed=2))
    assert torch.allclose(cfg_zero_star(args), args["denoised"], atol=1e-5)  # s* = 1: plain CFG


def test_cfg_norm_caps_the_channel_norm_at_the_positive() -> None:
    cond = rand(1, 4, 8, 8)
    args = post_args(cond, -cond, 3.0, torch.zeros_like(cond))  # guided = 5 cond, norm 5x the positive's
    assert torch.allclose(cfg_norm(args, 1.0), cond, atol=1e-5)
    assert torch.allclose(cfg_norm(args, 0.5), cond * 0.5, atol=1e-5)
    small = post_args(cond, cond, 1.0, torch.zeros_like(cond))
    assert torch.allclose(cfg_norm(small, 1.0), cond, atol=1e-5)  # already within: unchanged


def test_mahiro_weights_by_the_similarity_of_the_leaps() -> None:
    v = rand(1, 4, 8, 8).abs() + 0.1
    aligned = post_args(v, v, 4.0, torch.zeros_like(v))  # every leap along v: similarity 1 -> plain CFG
    assert torch.allclose(mahiro(aligned), aligned["denoised"], atol=1e-5)
    opposed = post_args(v, -v, 1.0, torch.zeros_like(v))  # uncond leap against the merge: similarity -1
    assert torch.allclose(mahiro(opposed), v * 1.0, atol=1e-5)  # -> the positive leap


def test_tcfg_keeps_an_aligned_negative_and_damps_the_tangential_part() -> None:
    x = torch.zeros(1, 4, 8, 8)
    c = rand(1, 4, 8, 8)
    args = {"input": x, "conds_out": [x - c, x - 2 * c], "conds": [[1], [1]]}
    out = tangential_damping_cfg(args)
    assert torch.allclose(out[1], x - 2 * c, atol=1e-4)  # parallel scores: nothing to drop
    t = rand(1, 4, 8, 8, seed=3)
    t = t - (t * c).sum() / (c * c).sum() * c  # orthogonal to c
    args = {"input": x, "conds_out": [x - c, x - (c + 0.1 * t)], "conds": [[1], [1]]}
    damped_score = x - tangential_damping_cfg(args)[1]
    # the negative score is projected on the top right-singular vector of [uncond; cond], which lies between
    # the two scores: the component along t (absent from the positive) shrinks, the one along c stays
    tangential, original = float((damped_score * t).sum()), float((0.1 * t * t).sum())
    assert 0 < tangential < 0.6 * original
    assert math.isclose(float((damped_score * c).sum()), float((c * c).sum()), rel_tol=0.02)
    assert tangential_damping_cfg({"input": x, "conds_out": [x], "conds": [[1], None]}) == [x]


def test_apg_with_eta_1_and_no_threshold_is_cfg_from_the_positive() -> None:
    cond, uncond, x = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1), rand(1, 4, 8, 8, seed=2)
    apg = ApgPreCfg(1.0, 0.0, 0.0)
    pre = apg({"conds_out": [cond, uncond], "sigma": torch.tensor([2.0]), "cond_scale": 4.0})
    guided = cfg_function(None, pre[0], pre[1], 4.0, x, torch.tensor([2.0]), {})
    assert torch.allclose(guided, cond + 4.0 * (cond - uncond), atol=1e-4)
    ortho = ApgPreCfg(0.0, 0.0, 0.0)({"conds_out": [cond, uncond], "sigma": torch.tensor([2.0]), "cond_scale": 4.0})
    g = ortho[0] - uncond - (cond - uncond) / 4.0
    assert abs(float((g * cond).sum())) < 1e-3 * float(g.norm() * cond.norm())  # eta 0: no parallel part


def test_apg_momentum_accumulates_and_resets_on_a_new_run() -> None:
    cond, uncond = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1)
    apg = ApgPreCfg(1.0, 0.0, 0.5)
    args = {"conds_out": [cond, uncond], "cond_scale": 2.0}
    first = apg({**args, "sigma": torch.tensor([3.0])})
    second = apg({**args, "sigma": torch.tensor([2.0])})  # running = 0.5 g + g
    assert not torch.allclose(first[0], second[0])
    again = apg({**args, "sigma": torch.tensor([3.0])})  # sigma rose: a new run starts from scratch
    assert torch.allclose(again[0], first[0])


def test_epsilon_scaling_divides_the_noise() -> None:
    x, d = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1)
    assert torch.allclose(epsilon_scaling({"input": x, "denoised": d}, 2.0), x - (x - d) / 2)


def test_renorm_cfg_caps_and_truncates() -> None:
    cond = rand(1, 4, 8, 8)
    args = post_args(cond, -cond, 3.0, torch.zeros_like(cond))  # CFG = 5 cond
    out = renorm_cfg({**args, "timestep": torch.tensor([1.0])}, 100.0, 2.0, 4)
    assert torch.allclose(-out, 2 * cond, atol=1e-5)  # norm capped at 2x the positive
    plain = renorm_cfg({**args, "timestep": torch.tensor([1.0])}, 100.0, 0.0, 4)
    assert torch.allclose(-plain, 5 * cond, atol=1e-5)
    late = renorm_cfg({**args, "timestep": torch.tensor([200.0])}, 100.0, 2.0, 4)
    assert torch.allclose(-late, cond)  # beyond cfg_trunc: the positive prediction


def test_perp_neg_removes_only_the_perpendicular_negative() -> None:
    empty, p = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1)
    q = rand(1, 4, 8, 8, seed=2)
    q = q - (q * p).sum() / (p * p).sum() * p  # perpendicular to p
    pos = empty + p
    assert torch.allclose(perp_neg(pos, empty + 0.7 * p, empty, 1.5, 6.0), empty + 6.0 * p, atol=1e-5)
    assert torch.allclose(perp_neg(pos, empty + q, empty, 1.5, 6.0), empty + 6.0 * (p - 1.5 * q), atol=1e-4)


def test_third_cond_cfg_functions() -> None:
    pos, neg, mid, x = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1), rand(1, 4, 8, 8, seed=2), rand(1, 4, 8, 8, seed=3)

    def third(model: Any, x_: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return mid

    args = {"input": x, "cond_denoised": pos, "uncond_denoised": neg, "sigma": torch.tensor([1.0]),
            "cond_scale": 6.0, "model": None}
    regular = x - dual_cfg_function(third, 3.0, 2.0, False)(args)  # type: ignore[arg-type]
    assert torch.allclose(regular, neg + 2.0 * (mid - neg) + 3.0 * (pos - mid), atol=1e-5)
    nested = x - dual_cfg_function(third, 3.0, 2.0, True)(args)  # type: ignore[arg-type]
    assert torch.allclose(nested, neg + 2.0 * (mid + 3.0 * (pos - mid) - neg), atol=1e-5)
    perp = x - perp_neg_cfg_function(third, 1.5)(args)  # type: ignore[arg-type]
    assert torch.allclose(perp, perp_neg(pos, neg, mid, 1.5, 6.0))


def test_continuous_edm_and_v_sampling() -> None:
    edm = ModelSamplingContinuousEDM("edm", 0.002, 120.0, 0.5)
    assert math.isclose(float(edm.sigma_min), 0.002, rel_tol=1e-5)
    assert math.isclose(float(edm.sigma_max), 120.0, rel_tol=1e-5)
    s = torch.tensor([3.0])
    assert torch.allclose(edm.sigma(edm.timestep(s)), s) and math.isclose(float(edm.timestep(s)), math.log(3) / 4,
                                                                           rel_tol=1e-6)
    out, x = rand(1, 4, 2, 2), rand(1, 4, 2, 2, seed=1)
    want = x * 0.25 / (9 + 0.25) + out * 3 * 0.5 / math.sqrt(9.25)  # Karras et al. c_skip x + c_out F
    assert torch.allclose(edm.calculate_denoised(s, out, x), want, atol=1e-6)
    assert torch.allclose(ModelSamplingContinuousEDM("eps").calculate_denoised(s, out, x), x - 3 * out)
    assert edm.percent_to_sigma(0.0) > 1e8 and edm.percent_to_sigma(1.0) == 0.0
    assert math.isclose(edm.percent_to_sigma(0.5), math.sqrt(0.002 * 120.0), rel_tol=1e-4)
    v = ModelSamplingContinuousV("v", 0.03, 500.0)
    assert math.isclose(float(v.timestep(torch.tensor(1.0))), 0.5, rel_tol=1e-6)
    assert torch.allclose(v.sigma(v.timestep(s)), s, rtol=1e-5)
    with pytest.raises(ValueError, match="sigma_min"):
        ModelSamplingContinuousEDM("eps", 5.0, 1.0)


def test_renorm_cfg_caps_each_sample_of_a_batch() -> None:
    cond = rand(2, 4, 8, 8)
    uncond = torch.stack([-cond[0], cond[1]])  # sample 0: CFG = 5 cond (capped); sample 1: CFG = cond (kept)
    args = {**post_args(cond, uncond, 3.0, torch.zeros_like(cond)), "timestep": torch.tensor([1.0, 1.0])}
    out = -renorm_cfg(args, 100.0, 2.0, 4)
    assert torch.allclose(out[0], 2 * cond[0], atol=1e-5) and torch.allclose(out[1], cond[1], atol=1e-5)


def test_playground_latent_format_standardises_each_channel() -> None:
    raw = torch.tensor([-1.6574, 1.886, -1.383, 2.5155]).view(1, 4, 1, 1) + torch.tensor(
        [8.4927, 5.9022, 6.5498, 5.2299]).view(1, 4, 1, 1) * 2.0
    assert torch.allclose(PLAYGROUND_V25.process_in(raw), torch.ones(1, 4, 1, 1), atol=1e-5)  # 2 std * 0.5
    x = rand(1, 4, 8, 8)
    assert torch.allclose(PLAYGROUND_V25.process_out(PLAYGROUND_V25.process_in(x)), x, atol=1e-5)
