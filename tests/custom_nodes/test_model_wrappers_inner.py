"""ComfyUI's inner model wrappers run in Loom's sampler with ComfyUI's arguments: `sampler_sample` around the
sampler's run, `calc_cond_batch` around the batched model calls of each guided prediction (the MODEL's
`on_prepare_state` callbacks just inside it) and `diffusion_model` around the network's forward. What a wrapper
returns or passes on is what the sampling uses; wrappers that pass everything through change nothing."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import get_sampler, sample


def _run(tiny, model=None, cfg=5.0, name="euler", seed=7, **kw):
    base, pos, neg = tiny
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model or base, noise, 3, cfg, name, "normal", pos, neg, torch.zeros(1, 4, 8, 8), seed=seed,
                  **kw)


def test_wrappers_of_every_type_that_pass_through_change_nothing(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    plain = _run(tiny, name="euler_ancestral")
    counts: dict[str, int] = {}

    def through(kind):
        def wrapper(executor, *args, **kwargs):
            counts[kind] = counts.get(kind, 0) + 1
            return executor(*args, **kwargs)
        return wrapper

    model = tiny[0].clone()
    kinds = (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.SAMPLER_SAMPLE, pe.WrappersMP.PREDICT_NOISE,
             pe.WrappersMP.CALC_COND_BATCH, pe.WrappersMP.APPLY_MODEL, pe.WrappersMP.DIFFUSION_MODEL)
    for kind in kinds:
        model.add_wrapper_with_key(kind, "through", through(kind))
    model.add_callback(pe.CallbacksMP.ON_PREPARE_STATE, lambda m, t: None)
    assert torch.equal(_run(tiny, model, name="euler_ancestral"), plain)
    assert counts == {"outer_sample": 1, "sampler_sample": 1, "predict_noise": 3, "calc_cond_batch": 3,
                      "apply_model": 3, "diffusion_model": 3}


def test_a_sampler_sample_wrapper_sees_comfyui_arguments_and_scales_the_run(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe
    import comfy.samplers

    plain = _run(tiny)
    model = tiny[0].clone()
    seen: list[tuple] = []

    def scale(executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar):
        options = extra_args["model_options"]
        seen.append((isinstance(guider, comfy.samplers.CFGGuider), guider.model_patcher is model,
                     tuple(sigmas.shape), extra_args["seed"], options["transformer_options"]["sample_sigmas"] is sigmas,
                     options is not model.model_options, tuple(noise.shape), tuple(latent_image.shape), denoise_mask,
                     isinstance(executor.class_obj, comfy.samplers.KSAMPLER), executor.class_obj.sampler_name))
        return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar) * 0.9

    model.add_wrapper_with_key(pe.WrappersMP.SAMPLER_SAMPLE, "scale", scale)
    out = _run(tiny, model)
    assert seen == [(True, True, (4,), 7, True, True, (1, 4, 8, 8), (1, 4, 8, 8), None, True, "euler")]
    # SD1.5's latent leaves model space divided by its scale factor: scaling inside equals scaling the result
    torch.testing.assert_close(out, plain * 0.9, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, plain)


def test_what_a_sampler_sample_wrapper_passes_on_is_what_runs(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    full: list[torch.Tensor] = []

    def skip_first(executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar):
        full.append(sigmas.clone())
        return executor(guider, sigmas[1:], extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)

    model = tiny[0].clone()
    model.add_wrapper(pe.WrappersMP.SAMPLER_SAMPLE, skip_first)
    out = _run(tiny, model)
    assert torch.equal(out, _run(tiny, sigmas=full[0][1:], sampler=get_sampler("euler")))

    def other_seed(executor, guider, sigmas, extra_args, *rest):
        return executor(guider, sigmas, {**extra_args, "seed": 8}, *rest)

    reseeded = tiny[0].clone()
    reseeded.add_wrapper(pe.WrappersMP.SAMPLER_SAMPLE, other_seed)
    ancestral = _run(tiny, reseeded, name="euler_ancestral")
    assert torch.equal(ancestral, _run(tiny, name="euler_ancestral", seed=8))
    assert not torch.equal(ancestral, _run(tiny, name="euler_ancestral"))


def test_a_calc_cond_batch_wrapper_scales_or_replaces_the_predictions_like_by_hand(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe
    import comfy.samplers

    seen: list[tuple] = []

    def scale(executor, model, conds, x_in, timestep, model_options):
        seen.append((model is wrapped, len(conds), [len(c) for c in conds], tuple(x_in.shape), tuple(timestep.shape),
                     isinstance(model_options, dict), executor.class_obj))
        return [out * 0.9 for out in executor(model, conds, x_in, timestep, model_options)]

    wrapped = tiny[0].clone()
    wrapped.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, "scale", scale)
    by_hand = tiny[0].clone()
    by_hand.set_model_sampler_calc_cond_batch_function(lambda args: [out * 0.9 for out in comfy.samplers.calc_cond_batch(
        args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])])
    out = _run(tiny, wrapped)
    assert torch.equal(out, _run(tiny, by_hand))
    assert not torch.equal(out, _run(tiny))
    assert len(seen) == 3 and seen[0] == (True, 2, [1, 1], (1, 4, 8, 8), (1,), True, None)

    def cond_only(executor, model, conds, x_in, timestep, model_options):  # uncond := cond: CFG gives cond
        cond = executor(model, [conds[0]], x_in, timestep, model_options)[0]
        return [cond, cond]

    in_options = tiny[0].clone()  # the module function, writing into model_options
    pe.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, "cond", cond_only, in_options.model_options,
                            is_model_options=True)
    assert torch.equal(_run(tiny, in_options), _run(tiny, cfg=1.0))


def test_on_prepare_state_runs_once_per_batch_before_the_model_calls(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    model = tiny[0].clone()
    events: list[object] = []
    model.add_callback(pe.CallbacksMP.ON_PREPARE_STATE,
                       lambda m, timestep: events.append(("prepare", m is model, float(timestep[0]))))
    model.add_wrapper(pe.WrappersMP.APPLY_MODEL, lambda executor, *a, **k: events.append("call") or executor(*a, **k))
    assert torch.equal(_run(tiny, model), _run(tiny))
    assert [e if e == "call" else e[:2] for e in events] == [("prepare", True), "call"] * 3
    sigmas = [e[2] for e in events if e != "call"]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0


def test_a_diffusion_model_wrapper_scales_the_network_output_like_an_object_patch(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    network = tiny[0].diffusion_model
    seen: list[tuple] = []

    def scale(executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        seen.append((tuple(x.shape), tuple(timesteps.shape), tuple(context.shape[:2]), y, control,
                     isinstance(transformer_options, dict), executor.class_obj is network, kwargs,
                     float(timesteps[0])))
        return executor(x, timesteps, context, y, control, transformer_options, **kwargs) * 0.9

    wrapped = tiny[0].clone()
    wrapped.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "scale", scale)
    by_hand = tiny[0].clone()
    forward = network.forward
    by_hand.add_object_patch("diffusion_model.forward", lambda *a, **k: forward(*a, **k) * 0.9)
    out = _run(tiny, wrapped)
    assert torch.equal(out, _run(tiny, by_hand))
    assert not torch.equal(out, _run(tiny))
    assert len(seen) == 3 and seen[0][:-1] == ((2, 4, 8, 8), (2,), (2, 77), None, None, True, True, {})
    assert seen[0][-1] > 900 and seen[0][-1] > seen[1][-1] > seen[2][-1] >= 0  # timesteps (0..999), not sigmas


def test_types_loom_does_not_run_are_still_refused(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    model = tiny[0].clone()
    with pytest.raises(NotImplementedError, match="'a_future_type': Loom's sampler does not run that type"):
        model.add_wrapper("a_future_type", lambda executor, *a, **k: executor(*a, **k))
    with pytest.raises(NotImplementedError, match="'on_apply_hooks'"):
        model.add_callback(pe.CallbacksMP.ON_APPLY_HOOKS, lambda *a: None)
    with pytest.raises(NotImplementedError, match="'a_future_type'"):
        pe.add_wrapper("a_future_type", lambda *a: None, model.model_options, is_model_options=True)
    assert model.wrappers == {} and model.callbacks == {}


def test_cfg_hooks_read_the_runs_schedule_as_sample_sigmas(tiny) -> None:
    seen: list[torch.Tensor] = []

    def plain_cfg(args):  # what CFG-Zero* style functions read to find the step
        seen.append(args["model_options"]["transformer_options"]["sample_sigmas"])
        return args["uncond"] + (args["cond"] - args["uncond"]) * args["cond_scale"]

    model = tiny[0].clone()
    model.set_model_sampler_cfg_function(plain_cfg)
    out = _run(tiny, model)
    torch.testing.assert_close(out, _run(tiny), rtol=1e-5, atol=1e-5)
    assert len(seen) == 3 and all(s is seen[0] for s in seen) and seen[0].shape == (4,) and float(seen[0][-1]) == 0
    assert "sample_sigmas" not in model.model_options["transformer_options"]  # the run's copy, not the MODEL's


def test_without_the_compatibility_layer_the_engine_refuses_no_type(packs, tiny) -> None:
    def fn(executor, *args, **kwargs):
        return executor(*args, **kwargs)

    packs.load("good_pack")
    packs.environment.uninstall()  # the engine knows no ComfyUI type names: nothing is refused any more
    model = tiny[0].clone()
    model.add_wrapper_with_key("prepare_sampling", "k", fn)
    model.add_callback("on_load_after", fn)
    assert model.get_wrappers("prepare_sampling", "k") == [fn] and model.get_all_callbacks("on_load_after") == [fn]
