"""`comfy_extras.nodes_perpneg.Guider_PerpNeg` (Inspire's scheduled PerpNeg guider subclasses it): a
`comfy.samplers.CFGGuider` whose predict_noise sees the empty prompt resolved and samples as Loom's PerpNegGuider."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny(tiny_sd15):
    model, clip = tiny_sd15
    return model, clip.encode("a red circle"), clip.encode("a blue square"), clip.encode("")


def _runner(model):
    import comfy.samplers

    from engine.sampling.custom import run_custom

    sampler = comfy.samplers.sampler_object("euler")
    sigmas = comfy.samplers.KSampler(model, 3, "cpu").sigmas
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return lambda guider: run_custom(guider, noise, torch.zeros(1, 4, 8, 8), sampler, sigmas, seed=7).samples


def test_guider_perpneg_samples_as_loom_perpneg_guider(packs, tiny) -> None:
    packs.load("good_pack")
    from comfy_extras.nodes_perpneg import Guider_PerpNeg

    from engine.sampling.custom import CFGGuide
    from engine.sampling.guiders import PerpNegGuide

    model, pos, neg, empty = tiny
    run = _runner(model)
    guider = Guider_PerpNeg(model)
    guider.set_conds(pos, neg, empty)
    guider.set_cfg(5.0, 0.7)
    out = run(guider)
    expected = run(PerpNegGuide(model, pos, neg, empty, 5.0, 0.7))
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)  # one batched call here, two in Loom's
    assert (out - run(CFGGuide(model, pos, neg, 5.0))).abs().max() > 0.05
    assert (out - run(PerpNegGuide(model, pos, neg, empty, 5.0, 0.0))).abs().max() > 0.05

    guider.set_cfg(1.0, 0.0)  # ComfyUI's shortcut: the positive prediction alone, as CFG at 1
    assert torch.equal(run(guider), run(CFGGuide(model, pos, neg, 1.0)))


def test_a_guider_perpneg_subclass_sees_the_resolved_empty_prompt(packs, tiny) -> None:
    """Inspire's Guider_PerpNeg_scheduled: its own set_cfg, a cfg per step set in predict_noise before super()'s."""
    packs.load("good_pack")
    from comfy_extras.nodes_perpneg import Guider_PerpNeg

    from engine.sampling.conditioning import Cond
    from engine.sampling.guiders import PerpNegGuide

    model, pos, neg, empty = tiny
    run = _runner(model)
    seen: list[tuple] = []

    class Scheduled(Guider_PerpNeg):
        def __init__(self, model_patcher, cfgs, neg_scale):
            super().__init__(model_patcher)
            self.cfgs, self.neg_scale, self.step = cfgs, neg_scale, 0

        def set_cfg(self, cfg):
            self.cfgs = [cfg] * len(self.cfgs)

        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
            resolved = self.conds["empty_negative_prompt"]
            seen.append((len(resolved), all(isinstance(c, Cond) for c in resolved), len(self.conds["negative"])))
            self.cfg = self.cfgs[self.step % len(self.cfgs)]
            self.step += 1
            return super().predict_noise(x, timestep, model_options, seed)

    guider = Scheduled(model, [5.0, 5.0, 5.0], 0.7)
    guider.set_conds(pos, neg, empty)
    flat = run(guider)
    assert seen == [(1, True, 1)] * 3
    torch.testing.assert_close(flat, run(PerpNegGuide(model, pos, neg, empty, 5.0, 0.7)), rtol=1e-3, atol=1e-3)
    guider.cfgs, guider.step = [8.0, 4.0, 1.0], 0
    assert (run(guider) - flat).abs().max() > 0.05


def test_guider_perpneg_runs_post_cfg_hooks_with_the_empty_prediction(packs, tiny) -> None:
    packs.load("good_pack")
    from comfy_extras.nodes_perpneg import Guider_PerpNeg, perp_neg

    from engine.sampling.custom import CFGGuide

    model, pos, neg, empty = tiny
    run = _runner(model)
    hooked = model.clone()
    seen: list[torch.Tensor] = []

    def post(args):  # returns the empty prompt's prediction: the run then follows it alone
        expected = perp_neg(args["input"], args["cond_denoised"], args["uncond_denoised"],
                            args["empty_cond_denoised"], 0.7, args["cond_scale"])
        seen.append(torch.equal(expected, args["denoised"]) and args["empty_cond"] is not None)
        return args["empty_cond_denoised"]

    hooked.set_model_sampler_post_cfg_function(post)
    guider = Guider_PerpNeg(hooked)
    guider.set_conds(pos, neg, empty)
    guider.set_cfg(5.0, 0.7)
    out = run(guider)
    assert seen == [True] * 3
    torch.testing.assert_close(out, run(CFGGuide(model, empty, neg, 1.0)), rtol=1e-3, atol=1e-3)
