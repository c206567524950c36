"""Torch-free name lists the server needs before any model work: the implemented sampler and scheduler names.

``/object_info`` and prompt validation read these (KSampler's option lists) right after start-up; importing
``engine.sampling`` for them would import torch (seconds). They must equal ``engine.sampling.SAMPLER_NAMES``
/ ``SCHEDULER_NAMES`` (ComfyUI's option order, restricted to what is implemented), which
``tests/engine/test_names.py`` checks.
"""
from __future__ import annotations

__all__ = ["HOOK_INTERPOLATIONS", "SAMPLER_NAMES", "SCHEDULER_NAMES"]

SAMPLER_NAMES: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)

SCHEDULER_NAMES: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
)

# CreateHookKeyframesInterpolated's strength curves (engine.hooks.interpolate implements them)
HOOK_INTERPOLATIONS: tuple[str, ...] = ("linear", "ease_in", "ease_out", "ease_in_out")
