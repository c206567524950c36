"""engine.hooks / hook_conds / sampling.hook_run: ComfyUI's keyframe selection and CLIP schedule ranges,
conditioning edits, default entries, and hooked and plain conds evaluated with their own weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine import hook_conds
from engine.hooks import HookGroup, HookKeyframe, HookKeyframes, WeightHook, clip_schedule, interpolate
from engine.sampling.conditioning import resolve_conds
from engine.sampling.guider import calc_cond_batch
from engine.sampling.hook_run import KeyframeClock, bind_hooks


class LinearSampling:
    """percent_to_sigma with ComfyUI's ends and sigma = 10 * (1 - percent) between them."""

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return 10.0 * (1.0 - percent)


def schedule(*frames: tuple[float, float, int]) -> HookKeyframes:
    kfs = HookKeyframes()
    for strength, start, guarantee in frames:
        kfs = kfs.add(HookKeyframe(strength, start, guarantee))
    return kfs


def run_clock(kfs: HookKeyframes, sigmas: list[float]) -> list[float]:
    clock = KeyframeClock(kfs, LinearSampling(), max(sigmas))
    return [clock.strength(s) for s in sigmas]


def test_keyframe_takes_over_once_sigma_reaches_its_start() -> None:
    kfs = schedule((1.0, 0.0, 1), (0.3, 0.5, 1))  # 0.3 from sigma 5 on
    assert run_clock(kfs, [10.0, 8.0, 6.0, 5.0, 2.0]) == [1.0, 1.0, 1.0, 0.3, 0.3]
    clock = KeyframeClock(kfs, LinearSampling(), 10.0)
    assert [clock.strength(s) for s in (10.0, 10.0, 4.0, 4.0)] == [1.0, 1.0, 0.3, 0.3]  # one step per sigma


def test_guaranteed_steps_hold_a_keyframe_and_unguaranteed_ones_are_skipped() -> None:
    # starts at sigma 9 and 8: at sigma 8 both have started
    assert run_clock(schedule((1.0, 0.0, 1), (0.5, 0.1, 1), (0.2, 0.2, 1)), [10.0, 8.0, 6.0]) == [1.0, 0.5, 0.2]
    assert run_clock(schedule((1.0, 0.0, 1), (0.5, 0.1, 0), (0.2, 0.2, 0)), [10.0, 8.0, 6.0]) == [1.0, 0.2, 0.2]
    # the first keyframe is current from the first step, wherever it starts; no keyframes = 1.0
    assert run_clock(schedule((0.5, 0.3, 1)), [10.0, 8.0]) == [0.5, 0.5]
    assert run_clock(HookKeyframes(), [10.0]) == [1.0]


def test_keyframes_sort_stably_by_start() -> None:
    kfs = schedule((0.3, 0.5, 1), (1.0, 0.0, 1), (0.7, 0.5, 1))
    assert [(k.strength, k.start_percent) for k in kfs.keyframes] == [(1.0, 0.0), (0.3, 0.5), (0.7, 0.5)]


def test_clip_schedule_ranges_cover_all_hooks() -> None:
    a = WeightHook(1.0, 1.0, keyframes=schedule((1.0, 0.0, 1), (0.3, 0.5, 1)))
    b = WeightHook(1.0, 1.0)
    c = WeightHook(1.0, 1.0, keyframes=schedule((0.6, 0.25, 1), (0.6, 0.75, 1)))  # equal strengths: one range
    assert clip_schedule(HookGroup([a, b, c])) == [((0.0, 0.25), [1.0, 1.0, 1.0]), ((0.25, 0.5), [1.0, 1.0, 0.6]),
                                                   ((0.5, 1.0), [0.3, 1.0, 0.6])]


def test_interpolation_curves() -> None:
    assert interpolate(0.0, 2.0, 3, "linear") == [0.0, 1.0, 2.0]
    assert interpolate(0.0, 1.0, 3, "ease_out") == [0.0, 0.75, 1.0]
    assert interpolate(1.0, 0.0, 3, "ease_in_out") == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        interpolate(0.0, 1.0, 3, "cubic")


def test_groups_combine_by_hook_identity() -> None:
    a, b = HookGroup([WeightHook(1.0, 1.0)]), HookGroup([WeightHook(0.5, 0.0)])
    assert a.combine(b).hooks == a.hooks + b.hooks and len(a.combine(a)) == 1
    kf = schedule((0.3, 0.0, 1))
    timed = a.with_keyframes(kf)
    assert timed.hooks[0].ref is a.hooks[0].ref and timed.hooks[0].keyframes is not kf
    assert len(a.combine(timed)) == 1 and a.combine(timed).hooks[0] is a.hooks[0]  # the first copy wins


def test_cond_edits_copy_and_combine_hooks() -> None:
    t = torch.zeros(1, 2, 4)
    a, b = HookGroup([WeightHook(1.0, 1.0)]), HookGroup([WeightHook(0.5, 0.5)])
    cond = [[t, {"hooks": a}], [t, {"hooks": a}], [t, {}]]
    out = hook_conds.set_hooks(cond, b)
    assert out[0][1]["hooks"] is out[1][1]["hooks"] and out[0][1]["hooks"].hooks == a.hooks + b.hooks
    assert out[2][1]["hooks"] is b and cond[2][1] == {}
    mask = torch.ones(4, 4)
    (masked,) = hook_conds.set_conds_props([cond[2:]], 0.4, "mask bounds", mask=mask, timesteps=(0.1, 0.6))
    opts = masked[0][1]
    assert opts["mask"].shape == (1, 4, 4) and opts["mask_strength"] == 0.4 and opts["set_area_to_bounds"]
    assert (opts["start_percent"], opts["end_percent"]) == (0.1, 0.6)
    (plain,) = hook_conds.set_conds_props([cond[2:]], 0.4, "default")
    assert plain[0][1] == {}  # without a mask the strength is not used
    (pos,) = hook_conds.set_default_conds_and_combine([cond[:1]], [cond[2:]], hooks=b)
    assert len(pos) == 2 and pos[1][1] == {"hooks": b, "default": True}


def test_clip_range_intersects_start_and_end_percent() -> None:
    ms = LinearSampling()
    entry = [torch.zeros(1, 2, 4), {"clip_start_percent": 0.5, "clip_end_percent": 1.0, "start_percent": 0.6}]
    (c,) = resolve_conds([entry], torch.Size([1, 4, 8, 8]), ms, torch.device("cpu"), "positive")
    assert c.sigma_start == pytest.approx(4.0) and c.sigma_end == 0.0


class ContextModel:
    """apply_model's x0 = the first context value of each row, everywhere (counts its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, **_: Any) -> torch.Tensor:
        self.calls += 1
        return context[:, 0, 0].reshape(-1, 1, 1, 1).expand_as(x).clone()


def _entry(value: float, **opts: Any) -> list[Any]:
    return [torch.full((1, 2, 4), value), opts]


def test_default_entry_fills_only_the_uncovered_part() -> None:
    left = torch.zeros(8, 8)
    left[:, :4] = 1.0
    entries = [_entry(2.0, mask=left), _entry(5.0, default=True)]
    conds = resolve_conds(entries, torch.Size([1, 4, 8, 8]), LinearSampling(), torch.device("cpu"), "positive")
    (pred,) = calc_cond_batch(ContextModel(), [conds], torch.zeros(1, 4, 8, 8), torch.tensor([1.0]))
    assert torch.allclose(pred[..., :4], torch.full_like(pred[..., :4], 2.0))
    assert torch.allclose(pred[..., 4:], torch.full_like(pred[..., 4:], 5.0))
    full = resolve_conds([_entry(2.0), _entry(5.0, default=True)], torch.Size([1, 4, 8, 8]), LinearSampling(),
                         torch.device("cpu"), "positive")
    model = ContextModel()
    (pred,) = calc_cond_batch(model, [full], torch.zeros(1, 4, 8, 8), torch.tensor([1.0]))
    assert torch.allclose(pred, torch.full_like(pred, 2.0)) and model.calls == 1  # nothing left: not run


@pytest.fixture(scope="module")
def tiny(fixtures_dir: Path) -> tuple[Any, Any]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.lora import load_lora
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    model = load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", manager, output_clip=False,
                            output_vae=False)[0]
    return model, load_lora(fixtures_dir / "families" / "tiny-sd15-lora.safetensors")


def test_hooked_and_plain_conds_run_with_their_own_weights(tiny: tuple[Any, Any]) -> None:
    from engine.hooks import hook_lora
    from engine.lora import apply_lora

    model, lora = tiny
    torch.manual_seed(3)
    hooks = hook_lora(lora, 0.8, 0.0)
    pos_t, neg_t = torch.randn(1, 77, 32), torch.randn(1, 77, 32)
    shape, dev = torch.Size([1, 4, 8, 8]), torch.device("cpu")
    pos = resolve_conds([[pos_t, {"hooks": hooks}]], shape, model.model_sampling, dev, "positive")
    neg = resolve_conds([[neg_t, {}]], shape, model.model_sampling, dev, "negative")
    sigmas = torch.tensor([5.0, 1.0, 0.0])
    bind_hooks([pos, neg], model.model_sampling, sigmas)
    x, sigma = torch.randn(shape), torch.tensor([5.0])
    got_pos, got_neg = calc_cond_batch(model, [pos, neg], x, sigma)
    lora_model, _ = apply_lora(model, None, lora, 0.8, 0.0)
    plain_pos = resolve_conds([[pos_t, {}]], shape, model.model_sampling, dev, "positive")
    (want_pos,) = calc_cond_batch(lora_model, [plain_pos], x, sigma)
    (want_neg,) = calc_cond_batch(model, [neg], x, sigma)
    assert torch.allclose(got_pos, want_pos, rtol=0, atol=1e-5) and torch.allclose(got_neg, want_neg, rtol=0, atol=1e-5)
    assert not torch.allclose(got_pos, calc_cond_batch(model, [plain_pos], x, sigma)[0], rtol=0, atol=1e-3)


def test_checkpoint_as_lora_moves_weights_towards_the_other_model(tiny: tuple[Any, Any]) -> None:
    import copy

    from engine.hooks import hook_model_as_lora

    model, _ = tiny
    torch.manual_seed(4)
    other = copy.copy(model)
    other.diffusion_model = copy.deepcopy(model.diffusion_model)
    halfway = copy.copy(model)
    halfway.diffusion_model = copy.deepcopy(model.diffusion_model)
    halfway.entry = model.manager.register(halfway.diffusion_model, "halfway", "unet")
    with torch.no_grad():
        for (_, p), (_, h) in zip(other.diffusion_model.named_parameters(),
                                  halfway.diffusion_model.named_parameters(), strict=True):
            d = 0.02 * torch.randn_like(p)
            h.add_(0.5 * d)
            p.add_(d)
    hooks = hook_model_as_lora(other, None, 0.5, 0.0)
    ctx = torch.randn(1, 77, 32)
    shape, dev = torch.Size([1, 4, 8, 8]), torch.device("cpu")
    pos = resolve_conds([[ctx, {"hooks": hooks}]], shape, model.model_sampling, dev, "positive")
    bind_hooks([pos], model.model_sampling, torch.tensor([5.0, 0.0]))
    x, sigma = torch.randn(shape), torch.tensor([5.0])
    (got,) = calc_cond_batch(model, [pos], x, sigma)
    plain = resolve_conds([[ctx, {}]], shape, model.model_sampling, dev, "positive")
    (want,) = calc_cond_batch(halfway, [plain], x, sigma)
    assert torch.allclose(got, want, rtol=0, atol=1e-4)
    assert not torch.allclose(got, calc_cond_batch(model, [plain], x, sigma)[0], rtol=0, atol=1e-3)


def test_third_conditioning_of_a_guider_runs_its_hooks(tiny: tuple[Any, Any]) -> None:
    from engine.hooks import hook_lora
    from engine.lora import apply_lora
    from engine.sampling.guiders import ThirdCondPrediction

    model, lora = tiny
    torch.manual_seed(5)
    ctx = torch.randn(1, 77, 32)
    timed = hook_lora(lora, 0.8, 0.0).with_keyframes(
        HookKeyframes().add(HookKeyframe(1.0, 0.0)).add(HookKeyframe(0.5, 0.5)))
    third = ThirdCondPrediction([[ctx, {"hooks": timed}]], "negative", "empty_conditioning")
    plain = ThirdCondPrediction([[ctx, {}]], "negative", "empty_conditioning")
    full, half = apply_lora(model, None, lora, 0.8, 0.0)[0], apply_lora(model, None, lora, 0.4, 0.0)[0]
    x = torch.randn(1, 4, 8, 8)
    high, low = torch.tensor([10.0]), torch.tensor([0.5])  # before / after the 0.5 keyframe's start
    for _ in range(2):  # a second run (sigma rises again) starts the schedule over
        assert torch.allclose(third(model, x, high), plain(full, x, high), rtol=0, atol=1e-5)
        assert torch.allclose(third(model, x, low), plain(half, x, low), rtol=0, atol=1e-5)
