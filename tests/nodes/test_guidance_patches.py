"""Guidance / model-sampling patch nodes and the third-conditioning guiders on the tiny SD1.5 model: each
patch is a clone with its hook (the input untouched), neutral settings reproduce plain sampling, the new
samplers run through KSampler, and ComfyUI's ids, categories and errors."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from nodes._base import NodeInputError

STEPS = 4
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def conds() -> tuple[list[Any], list[Any], list[Any]]:
    gen = torch.Generator().manual_seed(5)
    return tuple([[torch.randn(1, 77, 32, generator=gen), {}]] for _ in range(3))  # type: ignore[return-value]


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def empty() -> dict[str, Any]:
    return {"samples": torch.zeros(1, 4, 8, 16)}


def ksampler(registry: Any, model: Any, conds: Any, sampler: str = "euler", cfg: float = 5.0) -> torch.Tensor:
    (out,) = call(registry, "KSampler", model=model, seed=7, steps=STEPS, cfg=cfg, sampler_name=sampler,
                  scheduler="normal", positive=conds[0], negative=conds[1], latent_image=empty(), denoise=1.0)
    samples: torch.Tensor = out["samples"]
    return samples


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal up to float rounding relative to the latent's scale (latents here reach ~100)."""
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


def guided(registry: Any, model: Any, guider: Any) -> torch.Tensor:
    (noise,) = call(registry, "RandomNoise", noise_seed=7)
    (smp,) = call(registry, "KSamplerSelect", sampler_name="euler")
    (sigmas,) = call(registry, "BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=1.0)
    out, _ = call(registry, "SamplerCustomAdvanced", noise=noise, guider=guider, sampler=smp, sigmas=sigmas,
                  latent_image=empty())
    samples: torch.Tensor = out["samples"]
    return samples


@pytest.mark.parametrize(("node", "inputs", "hook"), [
    ("CFGZeroStar", {}, "sampler_post_cfg_function"), ("CFGNorm", {"strength": 1.0}, "sampler_post_cfg_function"),
    ("APG", {"eta": 1.0, "norm_threshold": 5.0, "momentum": 0.0}, "sampler_pre_cfg_function"),
    ("TCFG", {}, "sampler_pre_cfg_function"), ("Mahiro", {}, "sampler_post_cfg_function"),
    ("RenormCFG", {"cfg_trunc": 100.0, "renorm_cfg": 1.0}, "sampler_cfg_function"),
    ("Epsilon Scaling", {"scaling_factor": 1.005}, "sampler_post_cfg_function"),
])
def test_patch_nodes_clone_and_change_sampling(registry: Any, tiny_model: Any, conds: Any, node: str,
                                               inputs: dict[str, Any], hook: str) -> None:
    before = dict(tiny_model.model_options)
    (patched,) = call(registry, node, model=tiny_model, **inputs)
    assert patched is not tiny_model and tiny_model.model_options == before
    assert hook in patched.model_options
    plain = ksampler(registry, tiny_model, conds)
    out = ksampler(registry, patched, conds)
    assert torch.isfinite(out).all() and not torch.allclose(out, plain, atol=1e-5), node


def test_neutral_settings_reproduce_plain_sampling(registry: Any, tiny_model: Any, conds: Any) -> None:
    plain = ksampler(registry, tiny_model, conds)
    (eps,) = call(registry, "Epsilon Scaling", model=tiny_model, scaling_factor=1.0)
    assert close(ksampler(registry, eps, conds), plain)
    (renorm,) = call(registry, "RenormCFG", model=tiny_model, cfg_trunc=100.0, renorm_cfg=0.0)
    assert close(ksampler(registry, renorm, conds), plain)


def test_dual_cfg_with_cond2_as_negative_is_cfg(registry: Any, tiny_model: Any, conds: Any) -> None:
    pos, neg, _ = conds
    (cfg,) = call(registry, "CFGGuider", model=tiny_model, positive=pos, negative=neg, cfg=5.0)
    want = guided(registry, tiny_model, cfg)
    (dual,) = call(registry, "DualCFGGuider", model=tiny_model, cond1=pos, cond2=neg, negative=neg, cfg_conds=5.0,
                   cfg_cond2_negative=3.0, style="regular")
    assert close(guided(registry, tiny_model, dual), want)
    (nested,) = call(registry, "DualCFGGuider", model=tiny_model, cond1=pos, cond2=pos, negative=neg,
                     cfg_conds=2.0, cfg_cond2_negative=5.0, style="nested")
    assert close(guided(registry, tiny_model, nested), want)


def test_perp_neg_guider_with_empty_as_negative_is_cfg(registry: Any, tiny_model: Any, conds: Any) -> None:
    # negative == empty: nothing perpendicular to remove, so Perp-Neg is CFG from the empty prediction
    pos, neg, _ = conds
    (cfg,) = call(registry, "CFGGuider", model=tiny_model, positive=pos, negative=neg, cfg=5.0)
    (perp,) = call(registry, "PerpNegGuider", model=tiny_model, positive=pos, negative=neg, empty_conditioning=neg,
                   cfg=5.0, neg_scale=1.5)
    assert close(guided(registry, tiny_model, perp), guided(registry, tiny_model, cfg))
    (patched,) = call(registry, "PerpNeg", model=tiny_model, empty_conditioning=neg, neg_scale=1.5)
    assert close(ksampler(registry, patched, conds), ksampler(registry, tiny_model, conds))


@pytest.mark.parametrize("sampler", ["euler_cfg_pp", "dpmpp_2m_cfg_pp", "res_multistep_ancestral_cfg_pp", "deis",
                                     "er_sde", "seeds_2", "sa_solver_pece", "gradient_estimation"])
def test_new_samplers_run_through_ksampler(registry: Any, tiny_model: Any, conds: Any, sampler: str) -> None:
    out = ksampler(registry, tiny_model, conds, sampler=sampler)
    assert torch.isfinite(out).all() and out.shape == (1, 4, 8, 16)
    assert not torch.allclose(out, ksampler(registry, tiny_model, conds, sampler="euler"), atol=1e-4)


def test_model_sampling_continuous_nodes(registry: Any, tiny_model: Any, conds: Any) -> None:
    from engine.sampling.model_sampling_continuous import ModelSamplingContinuousEDM, ModelSamplingContinuousV

    (edm,) = call(registry, "ModelSamplingContinuousEDM", model=tiny_model, sampling="eps", sigma_max=120.0,
                  sigma_min=0.002)
    assert isinstance(edm.model_sampling, ModelSamplingContinuousEDM) and edm.model_sampling.prediction == "eps"
    assert type(tiny_model.model_sampling).__name__ == "ModelSamplingDiscrete"
    (v,) = call(registry, "ModelSamplingContinuousV", model=tiny_model, sampling="v_prediction", sigma_max=500.0,
                sigma_min=0.03)
    assert isinstance(v.model_sampling, ModelSamplingContinuousV)
    out = ksampler(registry, edm, conds)
    assert torch.isfinite(out).all()
    (pg,) = call(registry, "ModelSamplingContinuousEDM", model=tiny_model, sampling="edm_playground_v2.5",
                 sigma_max=80.0, sigma_min=0.002)
    assert pg.model_sampling.prediction == "edm" and pg.model_sampling.sigma_data == 0.5
    assert pg.latent_format.name == "SDXL_Playground_2_5" and tiny_model.latent_format.name == "SD15"
    with pytest.raises(NodeInputError, match="sampling"):
        call(registry, "ModelSamplingContinuousEDM", model=tiny_model, sampling="cosmos_rflow", sigma_max=120.0,
             sigma_min=0.002)


def test_timesteps_range_and_catalogue_entries(registry: Any) -> None:
    assert call(registry, "ConditioningTimestepsRange", start_percent=0.2, end_percent=0.7) == (
        (0.2, 0.7), (0.0, 0.2), (0.7, 1.0))
    info = registry.object_info()
    assert info["Epsilon Scaling"]["category"] == "model_patches/unet"
    assert info["APG"]["display_name"] == "Adaptive Projected Guidance"
    assert info["CFGZeroStar"]["output_name"] == ["patched_model"]
    assert info["PerpNegGuider"]["output"] == ["GUIDER"] and info["PerpNeg"]["deprecated"] is True
    assert info["ConditioningTimestepsRange"]["output_name"] == ["TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE"]
