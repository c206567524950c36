"""Packs that replace `comfy.samplers.KSAMPLER.sample` (TiledDiffusion) or `comfy.samplers.sampling_function`
(AutomaticCFG) are called on Loom's sampler runs and guided steps with ComfyUI's arguments, and what they pass on
or return is what runs."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import get_sampler, sample


def _run(tiny, cfg: float = 5.0, **kw):
    model, pos, neg = tiny
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model, noise, 3, cfg, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 8), seed=7, **kw)


def test_a_replaced_ksampler_sample_wraps_every_run(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.samplers

    model = tiny[0]
    plain = _run(tiny)
    seen: list[tuple] = []
    original = comfy.samplers.KSAMPLER.sample

    def replaced(*args, **kwargs):  # the way packs do it: read the arguments, call what they replaced
        self, model_wrap, sigmas, extra_args = args[:4]
        options = extra_args["model_options"]
        seen.append((self.sampler_name, sigmas.clone(), extra_args["seed"], options.pop("pack_flag", None),
                     model_wrap.model_patcher is model, tuple(args[5].shape)))
        return original(self, model_wrap, sigmas[1:], *args[3:], **kwargs)  # skip the first step

    model.model_options["pack_flag"] = "set on the model"
    comfy.samplers.KSAMPLER.sample = replaced
    try:
        out = _run(tiny)
    finally:
        comfy.samplers.KSAMPLER.sample = original
    full = seen[0][1]
    assert len(seen) == 1 and full.shape == (4,) and float(full[-1]) == 0.0
    assert seen[0][0] == "euler" and seen[0][2] == 7 and seen[0][3] == "set on the model" and seen[0][4]
    assert seen[0][5] == (1, 4, 8, 8)
    assert model.model_options.pop("pack_flag") == "set on the model"  # the pack popped from a copy
    # the schedule the pack passed on ran: the same as Loom's sampler given that schedule
    assert torch.equal(out, _run(tiny, sigmas=full[1:], sampler=get_sampler("euler")))
    assert not torch.equal(out, plain)

    assert torch.equal(_run(tiny), plain) and len(seen) == 1  # restored: runs go straight to the sampler
    packs.environment.uninstall()
    comfy.samplers.KSAMPLER.sample = replaced  # a module no longer loaded is not called
    assert torch.equal(_run(tiny), plain) and len(seen) == 1


def test_ksampler_sample_outside_a_run_says_what_to_do(packs) -> None:
    packs.load("good_pack")
    import comfy.samplers

    with pytest.raises(NotImplementedError, match="SamplerCustom"):
        comfy.samplers.KSAMPLER("euler").sample(object(), torch.ones(2), {}, None, torch.zeros(1))


def test_a_replaced_sampling_function_guides_every_step(packs, tiny) -> None:
    """AutomaticCFG's way: its own CFG step over comfy.samplers.calc_cond_batch, here dropping the negative pass."""
    packs.load("good_pack")
    import comfy.samplers

    model = tiny[0]
    original = comfy.samplers.sampling_function
    calls: list[tuple] = []

    def positive_only(model_, x, timestep, uncond, cond, cond_scale, model_options=None, seed=None, **kwargs):
        calls.append((model_ is model, len(uncond), cond_scale, seed, tuple(x.shape)))
        return comfy.samplers.calc_cond_batch(model_, [cond, None], x, timestep, model_options)[0]

    def through_the_original(model_, x, timestep, uncond, cond, cond_scale, model_options=None, seed=None):
        calls.append("original")
        return original(model_, x, timestep, uncond, cond, cond_scale, model_options, seed)

    plain, cfg1 = _run(tiny), _run(tiny, cfg=1.0)
    comfy.samplers.sampling_function = positive_only
    try:
        out = _run(tiny)
    finally:
        comfy.samplers.sampling_function = original
    assert calls == [(True, 1, 5.0, 7, (1, 4, 8, 8))] * 3  # one call per euler step
    assert torch.equal(out, cfg1) and not torch.equal(out, plain)  # the positive prediction alone guided it

    calls.clear()
    comfy.samplers.sampling_function = through_the_original
    try:
        again = _run(tiny)
    finally:
        comfy.samplers.sampling_function = original
    assert calls == ["original"] * 3 and torch.equal(again, plain)  # the original is Loom's CFG, not re-wrapped


def test_a_cfg_guider_subclass_guides_its_own_runs(packs, tiny) -> None:
    """KJNodes' scheduled CFG: a comfy.samplers.CFGGuider subclass whose predict_noise drops the negative pass
    outside a step range, reading the run's sigmas from transformer_options["sample_sigmas"]."""
    packs.load("good_pack")
    import comfy.samplers

    from engine.sampling.custom import CFGGuide, run_custom

    model, pos, neg = tiny
    seen: list[tuple] = []

    class ScheduledCFG(comfy.samplers.CFGGuider):
        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
            sigmas = model_options["transformer_options"]["sample_sigmas"]
            step = int(torch.isclose(sigmas, timestep.reshape(-1)[0]).nonzero()[0])
            seen.append((step, seed, len(self.conds["negative"])))
            if step >= self.until:
                return comfy.samplers.sampling_function(self.inner_model, x, timestep, None,
                                                        self.conds["positive"], 1.0, model_options, seed)
            return super().predict_noise(x, timestep, model_options, seed)

    sampler = comfy.samplers.sampler_object("euler")
    sigmas = comfy.samplers.KSampler(model, 3, "cpu").sigmas
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(guider):
        return run_custom(guider, noise, torch.zeros(1, 4, 8, 8), sampler, sigmas, seed=7).samples

    plain, cfg1 = run(CFGGuide(model, pos, neg, 5.0)), run(CFGGuide(model, pos, neg, 1.0))
    guider = ScheduledCFG(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(5.0)
    guider.until = 3  # guided every step
    assert torch.equal(run(guider), plain) and seen == [(0, 7, 1), (1, 7, 1), (2, 7, 1)]
    guider.until = 0  # cfg 1 every step
    assert torch.equal(run(guider), cfg1)
    guider.until = 1
    mixed = run(guider)
    assert not torch.equal(mixed, plain) and not torch.equal(mixed, cfg1)
    seen.clear()
    assert torch.equal(run(CFGGuide(model, pos, neg, 5.0)), plain) and seen == []  # other runs: not called
    base = comfy.samplers.CFGGuider(model)  # the class itself: Loom's CFG sampler
    base.set_conds(pos, neg)
    base.set_cfg(5.0)
    assert torch.equal(run(base), plain) and seen == []
