"""ComfyUI's model wrappers registered on a MODEL (`add_wrapper_with_key`) or in its `model_options`
(`comfy.patcher_extension.add_wrapper_with_key`) run in Loom's sampler with ComfyUI's arguments: `outer_sample`
around the sampling, `predict_noise` around each guided prediction, `apply_model` around each model call."""
from __future__ import annotations

import pytest
import torch

from engine.sampling import get_sampler, sample


def _run(tiny, model=None, **kw):
    base, pos, neg = tiny
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model or base, noise, 3, 5.0, "euler", "normal", pos, neg, torch.zeros(1, 4, 8, 8), seed=7, **kw)


def test_no_wrapper_samples_as_before(packs, tiny) -> None:
    plain = _run(tiny)
    packs.load("good_pack")
    assert torch.equal(_run(tiny), plain)
    assert torch.equal(_run(tiny, tiny[0].clone()), plain)


def test_an_apply_model_wrapper_scales_the_model_output_like_scaling_by_hand(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.model_base
    import comfy.patcher_extension as pe

    seen: list[tuple] = []

    def scale(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        seen.append((tuple(x.shape), tuple(t.shape), c_concat, tuple(c_crossattn.shape), control,
                     isinstance(transformer_options, dict), isinstance(executor.class_obj, comfy.model_base.BaseModel)))
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs) * 0.9

    wrapped = tiny[0].clone()
    wrapped.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "scale", scale)
    by_hand = tiny[0].clone()
    by_hand.set_model_unet_function_wrapper(lambda apply_model, args: apply_model(args["input"], args["timestep"],
                                                                                  **args["c"]) * 0.9)
    out = _run(tiny, wrapped)
    assert torch.equal(out, _run(tiny, by_hand))
    assert not torch.equal(out, _run(tiny))
    assert len(seen) == 3 and seen[0] == ((2, 4, 8, 8), (2,), None, (2, 77, seen[0][3][2]), None, True, True)

    in_options = tiny[0].clone()  # the module function, writing into model_options
    pe.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "scale", scale, in_options.model_options, is_model_options=True)
    assert torch.equal(_run(tiny, in_options), out) and len(seen) == 6


def test_an_outer_sample_wrapper_sees_the_run_and_what_it_passes_on_runs(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe
    import comfy.samplers

    model = tiny[0].clone()
    events: list[object] = []

    def outer(executor, noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
              latent_shapes):
        guider = executor.class_obj
        events.append(("before", sigmas.clone(), seed, tuple(noise.shape), tuple(latent_image.shape),
                       sampler.sampler_name, denoise_mask, isinstance(guider, comfy.samplers.CFGGuider),
                       guider.model_patcher is model, guider.cfg, [tuple(s) for s in latent_shapes]))
        out = executor(noise, latent_image, sampler, sigmas[1:], denoise_mask, callback, disable_pbar, seed,
                       latent_shapes=latent_shapes)
        events.append("after")
        return out

    model.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, "skip first", outer)
    model.add_callback(pe.CallbacksMP.ON_PRE_RUN, lambda m: events.append(("pre_run", m is model)))
    model.add_callback(pe.CallbacksMP.ON_CLEANUP, lambda m: events.append("cleanup"))
    out = _run(tiny, model)
    before = events[0]
    assert isinstance(before, tuple)
    full = before[1]
    assert full.shape == (4,) and float(full[-1]) == 0.0
    assert before[2:] == (7, (1, 4, 8, 8), (1, 4, 8, 8), "euler", None, True, True, 5.0, [(1, 4, 8, 8)])
    assert events[1:] == [("pre_run", True), "cleanup", "after"]
    assert torch.equal(out, _run(tiny, sigmas=full[1:], sampler=get_sampler("euler")))


def test_a_predict_noise_wrapper_runs_once_per_step(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe
    import comfy.samplers

    plain = _run(tiny)
    model = tiny[0].clone()
    calls: list[tuple] = []

    def predict(executor, x, timestep, model_options, seed):
        calls.append((tuple(x.shape), float(timestep[0]), isinstance(model_options, dict), seed,
                      isinstance(executor.class_obj, comfy.samplers.CFGGuider)))
        return executor(x, timestep, model_options, seed)

    model.add_wrapper(pe.WrappersMP.PREDICT_NOISE, predict)
    assert torch.equal(_run(tiny, model), plain)
    assert len(calls) == 3 and all(c[0] == (1, 4, 8, 8) and c[2:] == (True, 7, True) for c in calls)
    assert calls[0][1] > calls[1][1] > calls[2][1] > 0

    def halve_x(executor, x, timestep, model_options, seed):  # what it passes on is what is guided
        return executor(x * 0.5, timestep, model_options, seed)

    halved = tiny[0].clone()
    halved.add_wrapper(pe.WrappersMP.PREDICT_NOISE, halve_x)
    assert not torch.equal(_run(tiny, halved), plain)


def test_wrappers_survive_clone_and_a_removed_key_stops(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    counts = {"a": 0}

    def count(executor, *args, **kwargs):
        counts["a"] += 1
        return executor(*args, **kwargs)

    model = tiny[0].clone()
    model.add_wrapper_with_key(pe.WrappersMP.PREDICT_NOISE, "count", count)
    cloned = model.clone()
    assert cloned.get_wrappers(pe.WrappersMP.PREDICT_NOISE, "count") == [count]
    _run(tiny, cloned)
    assert counts["a"] == 3
    cloned.remove_wrappers_with_key(pe.WrappersMP.PREDICT_NOISE, "count")
    assert cloned.get_all_wrappers(pe.WrappersMP.PREDICT_NOISE) == []
    _run(tiny, cloned)
    assert counts["a"] == 3
    _run(tiny, model)  # the original keeps its own
    assert counts["a"] == 6
    assert tiny[0].get_all_wrappers(pe.WrappersMP.PREDICT_NOISE) == []

    clones: list[tuple] = []
    model.add_callback(pe.CallbacksMP.ON_CLONE, lambda src, new: clones.append((src is model, new is not model)))
    model.clone()
    assert clones == [(True, True)]


def test_types_loom_does_not_run_are_refused_naming_the_type(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    model = tiny[0].clone()
    with pytest.raises(NotImplementedError, match="'a_future_type': Loom's sampler does not run that type"):
        model.add_wrapper_with_key("a_future_type", "k", lambda executor, *a: executor(*a))
    with pytest.raises(NotImplementedError, match="'on_load_after'"):
        model.add_callback(pe.CallbacksMP.ON_LOAD, lambda *a: None)
    assert model.wrappers == {} and model.callbacks == {}


def test_wrappers_stop_when_the_environment_is_uninstalled(packs, tiny) -> None:
    packs.load("good_pack")
    import comfy.patcher_extension as pe

    plain = _run(tiny)
    model = tiny[0].clone()
    model.add_wrapper(pe.WrappersMP.APPLY_MODEL, lambda executor, *a, **k: executor(*a, **k) * 0.5)
    assert not torch.equal(_run(tiny, model), plain)
    packs.environment.uninstall()
    assert torch.equal(_run(tiny, model), plain)
