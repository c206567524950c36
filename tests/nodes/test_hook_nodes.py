"""Hook nodes on the tiny SD1.5 model and its LoRA: ComfyUI's ids, inputs and categories; hooked conds sample
like LoraLoader at the same strengths; strength 0 is no hook; combined hooks apply both; the shared weights
are untouched by a hooked run; model-only hooks leave the text encoder as it is; scheduled CLIP encodes."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from nodes._base import NodeInputError

LORA = "tiny-sd15-lora.safetensors"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def reg(registry: Any, paths: Any, fixtures_dir: Path) -> Any:
    loras = Path(paths.get_folder_paths("loras")[0])
    loras.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixtures_dir / "families" / LORA, loras / LORA)
    return registry


@pytest.fixture(scope="module")
def model_clip(fixtures_dir: Path) -> tuple[Any, Any]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    manager = ModelManager(DevicePolicy.detect(cpu_only=True, force_fp32=True))
    model, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", manager,
                                     output_vae=False)
    return model, clip


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), getattr(cls, "COMFY_FUNCTION", cls.FUNCTION))(**kwargs)  # LoraLoader: ComfyUI's tuple


def encode(registry: Any, clip: Any, text: str) -> Any:
    return call(registry, "CLIPTextEncode", clip=clip, text=text)[0]


def ksampler(registry: Any, model: Any, pos: Any, neg: Any) -> torch.Tensor:
    (out,) = call(registry, "KSampler", model=model, seed=11, steps=6, cfg=6.0, sampler_name="euler",
                  scheduler="normal", positive=pos, negative=neg,
                  latent_image={"samples": torch.zeros(1, 4, 8, 16)}, denoise=1.0)
    samples: torch.Tensor = out["samples"]
    return samples


def keyframes(registry: Any, *frames: tuple[float, float]) -> Any:
    kf = None
    for mult, start in frames:
        (kf,) = call(registry, "CreateHookKeyframe", strength_mult=mult, start_percent=start, prev_hook_kf=kf)
    return kf


def hooked_pair(registry: Any, hooks: Any, pos: Any, neg: Any) -> tuple[Any, Any]:
    pos_out, neg_out = call(registry, "PairConditioningSetProperties", positive_NEW=pos, negative_NEW=neg,
                            strength=1.0, set_cond_area="default", hooks=hooks)
    return pos_out, neg_out


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> bool:
    return bool((a - b).abs().max() <= rel * b.abs().max())


def test_specs_follow_comfyui(reg: Any) -> None:
    info = {name: reg.get(name) for name in ("CreateHookLora", "CreateHookKeyframe", "SetClipHooks",
                                             "CreateHookKeyframesInterpolated", "CombineHooks8",
                                             "PairConditioningSetDefaultCombine", "ConditioningSetProperties")}
    lora = info["CreateHookLora"].INPUT_TYPES()
    assert lora["required"]["lora_name"][0] == [LORA]
    assert lora["required"]["strength_model"][1] == {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.01}
    assert list(lora["optional"]) == ["prev_hooks"] and info["CreateHookLora"].CATEGORY == "advanced/hooks/create"
    kf = info["CreateHookKeyframe"]
    assert kf.RETURN_NAMES == ("HOOK_KF",) and kf.CATEGORY == "advanced/hooks/scheduling"
    clip = info["SetClipHooks"].INPUT_TYPES()["required"]
    assert clip["apply_to_conds"][1]["default"] is True and clip["schedule_clip"][1]["default"] is False
    interp = info["CreateHookKeyframesInterpolated"].INPUT_TYPES()["required"]
    assert interp["interpolation"][0] == ["linear", "ease_in", "ease_out", "ease_in_out"]
    assert interp["keyframes_count"][1] == {"default": 5, "min": 2, "max": 100, "step": 1}
    assert list(info["CombineHooks8"].INPUT_TYPES()["optional"]) == [f"hooks_{c}" for c in "ABCDEFGH"]
    pair = info["PairConditioningSetDefaultCombine"]
    assert pair.CATEGORY == "advanced/hooks/cond pair" and pair.RETURN_NAMES == ("positive", "negative")
    props = info["ConditioningSetProperties"].INPUT_TYPES()
    assert props["required"]["set_cond_area"][0] == ["default", "mask bounds"]
    assert list(props["optional"]) == ["mask", "hooks", "timesteps"]
    assert all(getattr(c, "EXPERIMENTAL", False) for c in info.values())


def test_strength_zero_hook_equals_no_hook(reg: Any, model_clip: Any) -> None:
    model, clip = model_clip
    pos, neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    plain = ksampler(reg, model, pos, neg)
    (hooks,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=0.9, strength_clip=0.7)
    (off,) = call(reg, "SetHookKeyframes", hooks=hooks, hook_kf=keyframes(reg, (0.0, 0.0)))
    assert torch.equal(ksampler(reg, model, *hooked_pair(reg, off, pos, neg)), plain)
    (zero,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=0.0, strength_clip=0.5)
    assert torch.equal(ksampler(reg, model, *hooked_pair(reg, zero, pos, neg)), plain)
    on = ksampler(reg, model, *hooked_pair(reg, hooks, pos, neg))
    assert not close(on, plain, 1e-3)  # the same hook at its strength does change the result


def test_keyframe_one_throughout_equals_lora_loader(reg: Any, model_clip: Any) -> None:
    model, clip = model_clip
    pos, neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    (hooks,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=0.9, strength_clip=0.7)
    (hooks,) = call(reg, "SetHookKeyframes", hooks=hooks, hook_kf=keyframes(reg, (1.0, 0.0)))
    hooked = ksampler(reg, model, *hooked_pair(reg, hooks, pos, neg))
    (lora_model,) = call(reg, "LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=0.9)
    assert close(hooked, ksampler(reg, lora_model, pos, neg))


def test_keyframes_switch_strength_mid_run(reg: Any, model_clip: Any) -> None:
    model, clip = model_clip
    pos, neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    (hooks,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=0.9, strength_clip=0.7)
    (sched,) = call(reg, "SetHookKeyframes", hooks=hooks, hook_kf=keyframes(reg, (1.0, 0.0), (0.3, 0.5)))
    scheduled = ksampler(reg, model, *hooked_pair(reg, sched, pos, neg))
    full = ksampler(reg, model, *hooked_pair(reg, hooks, pos, neg))
    (low_model,) = call(reg, "LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=0.27)
    low = ksampler(reg, low_model, pos, neg)
    assert not close(scheduled, full, 1e-4) and not close(scheduled, low, 1e-4)


def test_combine_hooks_applies_both(reg: Any, model_clip: Any) -> None:
    model, clip = model_clip
    pos, neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    (a,) = call(reg, "CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.5)
    (b,) = call(reg, "CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.4)
    (both,) = call(reg, "CombineHooks2", hooks_A=a, hooks_B=b)
    assert len(both) == 2
    (m1,) = call(reg, "LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=0.5)
    (m2,) = call(reg, "LoraLoaderModelOnly", model=m1, lora_name=LORA, strength_model=0.4)
    assert close(ksampler(reg, model, *hooked_pair(reg, both, pos, neg)), ksampler(reg, m2, pos, neg))
    (same,) = call(reg, "CombineHooks4", hooks_A=a, hooks_C=a)
    assert len(same) == 1  # a hook is in a group once
    assert call(reg, "CombineHooks8")[0] is None and call(reg, "CombineHooks2", hooks_B=a)[0] is a


def test_hooked_run_leaves_shared_weights_and_later_runs_unchanged(reg: Any, model_clip: Any) -> None:
    model, clip = model_clip
    pos, neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    before = {k: v.clone() for k, v in model.diffusion_model.state_dict().items()}
    plain = ksampler(reg, model, pos, neg)
    (hooks,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=0.9, strength_clip=0.7)
    (hooks,) = call(reg, "SetHookKeyframes", hooks=hooks, hook_kf=keyframes(reg, (1.0, 0.0), (0.3, 0.5)))
    (hooked_clip,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=hooks)
    ksampler(reg, model, encode(reg, hooked_clip, "a photo of a cat"), encode(reg, hooked_clip, "blurry"))
    after = model.diffusion_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not model.patches
    assert torch.equal(ksampler(reg, model, pos, neg), plain)


def test_model_only_hooks_leave_clip_untouched(reg: Any, model_clip: Any) -> None:
    _, clip = model_clip
    plain = encode(reg, clip, "a photo of a cat")
    (mo,) = call(reg, "CreateHookLoraModelOnly", lora_name=LORA, strength_model=1.0)
    (mo_clip,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=mo)
    cond = encode(reg, mo_clip, "a photo of a cat")
    assert torch.equal(cond[0][0], plain[0][0]) and cond[0][1]["hooks"] is mo
    (full,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=0.7)
    (full_clip,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=False, schedule_clip=False, hooks=full)
    hooked = encode(reg, full_clip, "a photo of a cat")
    assert "hooks" not in hooked[0][1] and not torch.equal(hooked[0][0], plain[0][0])
    (_, lora_clip) = call(reg, "LoraLoader", model=None, clip=clip, lora_name=LORA, strength_model=0.0,
                          strength_clip=0.7)
    assert torch.equal(hooked[0][0], encode(reg, lora_clip, "a photo of a cat")[0][0])


def test_schedule_clip_encodes_once_per_keyframe_range(reg: Any, model_clip: Any) -> None:
    _, clip = model_clip
    (hooks,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=0.7)
    (hooks,) = call(reg, "SetHookKeyframes", hooks=hooks, hook_kf=keyframes(reg, (1.0, 0.0), (0.3, 0.5)))
    (sched,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=True, hooks=hooks)
    cond = encode(reg, sched, "a photo of a cat")
    assert [(e[1]["clip_start_percent"], e[1]["clip_end_percent"]) for e in cond] == [(0.0, 0.5), (0.5, 1.0)]
    for entry, strength in zip(cond, (0.7, 0.7 * 0.3), strict=True):
        (_, ref) = call(reg, "LoraLoader", model=None, clip=clip, lora_name=LORA, strength_model=0.0,
                        strength_clip=strength)
        assert torch.allclose(entry[0], encode(reg, ref, "a photo of a cat")[0][0], rtol=0, atol=1e-6)
        assert entry[1]["hooks"] is hooks


def test_interpolated_and_float_keyframes(reg: Any) -> None:
    (kf,) = call(reg, "CreateHookKeyframesInterpolated", strength_start=0.0, strength_end=1.0,
                 interpolation="ease_in", start_percent=0.2, end_percent=0.6, keyframes_count=3)
    frames = kf.keyframes
    assert [round(f.start_percent, 6) for f in frames] == [0.2, 0.4, 0.6]
    assert [round(f.strength, 6) for f in frames] == [0.0, 0.25, 1.0]
    assert [f.guarantee_steps for f in frames] == [1, 0, 0]
    (fl,) = call(reg, "CreateHookKeyframesFromFloats", floats_strength=[0.5, 2.0], start_percent=0.0,
                 end_percent=1.0, prev_hook_kf=None)
    assert [(f.strength, f.start_percent) for f in fl.keyframes] == [(0.5, 0.0), (2.0, 1.0)]
    (one,) = call(reg, "CreateHookKeyframesFromFloats", floats_strength=0.7, start_percent=0.3, end_percent=1.0)
    # percents come from a float32 linspace, as in ComfyUI
    assert [(f.strength, f.start_percent) for f in one.keyframes] == [(0.7, float(torch.tensor(0.3)))]


def test_bad_inputs_name_node_and_input(reg: Any, paths: Any) -> None:
    with pytest.raises(NodeInputError, match="SetHookKeyframes.*'hooks'"):
        call(reg, "SetHookKeyframes", hooks="not hooks")
    with pytest.raises(NodeInputError, match="CreateHookLora.*'lora_name'.*missing.safetensors"):
        call(reg, "CreateHookLora", lora_name="missing.safetensors", strength_model=1.0, strength_clip=1.0)
    bogus = Path(paths.get_folder_paths("loras")[0]) / "bogus.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(bogus))
    with pytest.raises(NodeInputError, match="bogus.safetensors.*no LoRA modules"):
        call(reg, "CreateHookLora", lora_name="bogus.safetensors", strength_model=1.0, strength_clip=1.0)


def test_checkpoint_as_lora_of_the_same_checkpoint_changes_nothing(reg: Any, paths: Any, model_clip: Any,
                                                                   fixtures_dir: Path) -> None:
    model, clip = model_clip
    ckpts = Path(paths.get_folder_paths("checkpoints")[0])
    shutil.copyfile(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors", ckpts / "tiny-sd15.safetensors")
    (hooks,) = call(reg, "CreateHookModelAsLora", ckpt_name="tiny-sd15.safetensors", strength_model=0.8,
                    strength_clip=0.5)
    (hook,) = hooks.hooks
    assert hook.model_source is not None and hook.clip_source is not None
    (hooked_clip,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=hooks)
    pos, neg = encode(reg, hooked_clip, "a photo of a cat"), encode(reg, hooked_clip, "blurry")
    assert hooked_clip.hook_patches and not hooked_clip.patches and pos[0][1]["hooks"] is hooks
    plain_pos, plain_neg = encode(reg, clip, "a photo of a cat"), encode(reg, clip, "blurry")
    assert close(pos[0][0], plain_pos[0][0])
    assert close(ksampler(reg, model, pos, neg), ksampler(reg, model, plain_pos, plain_neg))
    (mo,) = call(reg, "CreateHookModelAsLoraModelOnly", ckpt_name="tiny-sd15.safetensors", strength_model=0.8)
    assert mo.hooks[0].strength_clip == 0.0


def test_a_second_set_clip_hooks_replaces_the_first(reg: Any, model_clip: Any) -> None:
    _, clip = model_clip
    (strong,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=1.5)
    (weak,) = call(reg, "CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=0.3)
    (first,) = call(reg, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=strong)
    (second,) = call(reg, "SetClipHooks", clip=first, apply_to_conds=False, schedule_clip=False, hooks=weak)
    (_, ref) = call(reg, "LoraLoader", model=None, clip=clip, lora_name=LORA, strength_model=0.0, strength_clip=0.3)
    cond = encode(reg, second, "a photo of a cat")
    assert torch.equal(cond[0][0], encode(reg, ref, "a photo of a cat")[0][0])
    assert cond[0][1]["hooks"] is strong  # apply_to_conds false keeps the conds' hooks (ComfyUI's behaviour)
    tokens = second.tokenize("a photo of a cat")
    assert torch.equal(second.encode_from_tokens(tokens), cond[0][0])  # direct encodes use the hooks too
