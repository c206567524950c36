"""The ComfyUI model-patcher pieces AnimateDiff-Evolved builds its sampling on, on Loom's MODEL: ComfyUI cond dicts
for `calc_cond_batch` wrappers, `prepare_sampling` wrappers, attachments, injections run around a sampling, an `outer_sample`
wrapper that replaces the guider's `model_options`, and `comfy.ops.disable_weight_init.GroupNorm`'s layer contract."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import sample


def _run(tiny, model=None):
    base, pos, neg = tiny
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model or base, noise, 3, 5.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 8), seed=7)


def test_attachments_and_additional_models_follow_clones(tiny) -> None:
    class PerClone:
        def __init__(self, n: int) -> None:
            self.n = n

        def on_model_patcher_clone(self) -> PerClone:
            return PerClone(self.n + 1)

    model = tiny[0].clone()
    shared = object()
    model.set_attachments("shared", shared)
    model.set_attachments("own", PerClone(0))
    model.set_additional_models("extra", [shared])
    clone = model.clone()
    assert clone.get_attachment("shared") is shared and clone.get_attachment("own").n == 1
    assert model.get_attachment("own").n == 0
    assert clone.get_additional_models_with_key("extra") == [shared] and clone.get_additional_models() == [shared]
    clone.remove_attachments("shared")
    clone.remove_additional_models("extra")
    assert clone.get_attachment("shared") is None and model.get_attachment("shared") is shared
    assert clone.get_additional_models() == [] and model.get_additional_models() == [shared]
    assert tiny[0].attachments == {} and tiny[0].additional_models == {}


def test_injections_run_around_each_sampling(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    events: list[str] = []
    model = tiny[0].clone()

    def inject(patcher) -> None:
        events.append("inject")
        patcher.diffusion_model.out[-1].weight.data.mul_(0.5)

    def eject(patcher) -> None:
        events.append("eject")
        patcher.diffusion_model.out[-1].weight.data.mul_(2.0)

    model.set_injections("half", [pe.PatcherInjection(inject=inject, eject=eject)])
    model.add_callback(pe.CallbacksMP.ON_PRE_RUN, lambda m: events.append("pre_run"))
    before = tiny[0].diffusion_model.out[-1].weight.detach().clone()
    out = _run(tiny, model)
    assert events == ["inject", "pre_run", "eject"]
    assert torch.equal(tiny[0].diffusion_model.out[-1].weight, before)  # ejected again
    assert not torch.allclose(out, _run(tiny))
    assert model.clone().get_injections("half") == model.get_injections("half")
    model.remove_injections("half")
    assert model.injections == {}


def test_an_outer_sample_wrapper_may_replace_the_guider_model_options(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.model_patcher
    import comfy.patcher_extension as pe

    def cfg_half(args):
        return (args["cond"] - args["uncond"]) * 0.5 + args["uncond"]

    def outer(executor, *args, **kwargs):
        guider = executor.class_obj
        guider.model_options = comfy.model_patcher.create_model_options_clone(guider.model_options)
        guider.model_options["sampler_cfg_function"] = cfg_half
        return executor(*args, **kwargs)

    wrapped = tiny[0].clone()
    wrapped.add_wrapper(pe.WrappersMP.OUTER_SAMPLE, outer)
    by_hand = tiny[0].clone()
    by_hand.set_model_sampler_cfg_function(cfg_half)
    torch.testing.assert_close(_run(tiny, wrapped), _run(tiny, by_hand))
    assert "sampler_cfg_function" not in wrapped.model_options


def test_disable_weight_init_group_norm_has_comfyui_layer_contract(packs) -> None:
    packs.load("good_pack")
    import comfy.ops

    layer = comfy.ops.disable_weight_init.GroupNorm(2, 4)
    plain = torch.nn.GroupNorm(2, 4)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 3, 3)
    assert isinstance(layer, torch.nn.GroupNorm) and layer.comfy_cast_weights is False
    torch.testing.assert_close(layer(x), plain(x))
    swapped = comfy.ops.disable_weight_init.GroupNorm.forward_comfy_cast_weights
    try:  # what AnimateDiff-Evolved does during a sampling: its cast forward is used when casting is asked for
        comfy.ops.disable_weight_init.GroupNorm.forward_comfy_cast_weights = lambda self, x: x * 0.0
        layer.comfy_cast_weights = True
        assert float(layer(x).abs().max()) == 0.0
    finally:
        comfy.ops.disable_weight_init.GroupNorm.forward_comfy_cast_weights = swapped
    with pytest.raises(AttributeError):
        torch.nn.GroupNorm.forward_comfy_cast_weights  # noqa: B018  (torch's own class is not touched)


def test_model_patcher_over_any_module_is_loaded_with_the_model_that_keeps_it(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.lora  # noqa: F401  (as AnimateDiff-Evolved: its calculate_weight takes ComfyUI's patch tuples)
    import comfy.model_patcher
    import comfy.patcher_extension as pe

    assert isinstance(tiny[0], comfy.model_patcher.ModelPatcher)  # a MODEL is one, placed by Loom's manager
    with pytest.raises(NotImplementedError, match="model manager"):
        tiny[0].load(torch.device("cpu"))
    module = torch.nn.Linear(2, 2)
    patcher = comfy.model_patcher.ModelPatcher(module, load_device="cpu", offload_device=torch.device("cpu"))
    events: list[tuple] = []
    patcher.add_callback_with_key(pe.CallbacksMP.ON_LOAD, "k", lambda p, device, lowvram, *rest: events.append(
        ("load", p.model is module, str(device), lowvram)))
    patcher.add_callback(pe.CallbacksMP.ON_PRE_RUN, lambda p: events.append(("pre_run",)))
    clone = patcher.clone()
    assert clone.model is module and clone.is_clone(patcher) and clone.model_size() == 6 * 4
    with pytest.raises(NotImplementedError, match="'apply_model'"):
        clone.add_wrapper(pe.WrappersMP.APPLY_MODEL, lambda executor, *a: executor(*a))
    clone.pre_run()
    assert events == [("pre_run",)]

    model = tiny[0].clone()
    model.set_additional_models("extra", [clone])
    _run(tiny, model)
    assert events[1:] == [("load", True, "cpu", 0)]

    before = module.weight.detach().clone()
    clone.add_patches({"weight": (torch.ones(2, 2),)}, strength_patch=0.5)  # ComfyUI's "diff" patch
    weights_seen: list[torch.Tensor] = []
    clone.add_callback(pe.CallbacksMP.ON_LOAD, lambda p, *rest: weights_seen.append(p.model.weight.detach().clone()))
    _run(tiny, model)
    torch.testing.assert_close(weights_seen[-1], before + 0.5)  # patched while loaded
    assert torch.equal(module.weight, before)  # put back after the run
    with pytest.raises(TypeError, match="torch.nn.Module"):
        comfy.model_patcher.ModelPatcher("not a module", "cpu", "cpu")


def test_calc_cond_batch_wrappers_get_comfyui_cond_dicts(packs, tiny) -> None:
    """Each side is a list of ComfyUI cond dicts (`model_conds` with `comfy.conds` values); what a wrapper replaces
    in copies of them is what runs."""
    packs.load("good_pack")
    import comfy.conds
    import comfy.patcher_extension as pe

    base, pos, neg = tiny
    seen: list[object] = []

    def negative_as_positive(executor, model, conds, x_in, timestep, model_options):
        positive, negative = conds
        seen.append(type(positive[0]["model_conds"]["c_crossattn"]))
        swapped = [dict(c, model_conds={**c["model_conds"], "c_crossattn": negative[0]["model_conds"]["c_crossattn"]})
                   for c in positive]
        return executor(model, [swapped, negative], x_in, timestep, model_options)

    model = base.clone()
    model.add_wrapper(pe.WrappersMP.CALC_COND_BATCH, negative_as_positive)
    torch.testing.assert_close(_run(tiny, model), _run((base, neg, neg)))
    assert seen and seen[0] is comfy.conds.CONDCrossAttn

    def foreign(executor, model, conds, x_in, timestep, model_options):
        return executor(model, [[{"model_conds": {}}], conds[1]], x_in, timestep, model_options)

    bad = base.clone()
    bad.add_wrapper(pe.WrappersMP.CALC_COND_BATCH, foreign)
    with pytest.raises(TypeError, match="did not hand it"):
        _run(tiny, bad)


def test_prepare_sampling_wrappers_run_once_per_sampling(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    seen: list[tuple] = []

    def prepare(executor, model, noise_shape, conds, model_options):
        seen.append((model is wrapped, tuple(noise_shape), isinstance(model_options, dict)))
        return executor(model, noise_shape, conds, model_options)

    wrapped = tiny[0].clone()
    wrapped.add_wrapper(pe.WrappersMP.PREPARE_SAMPLING, prepare)
    assert torch.equal(_run(tiny, wrapped), _run(tiny))
    assert seen == [(True, (1, 4, 8, 8), True)]
