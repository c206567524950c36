"""The hook nodes wired through the executor (validation of HOOKS / HOOK_KEYFRAMES / TIMESTEPS_RANGE links,
optional inputs left out): combined, interpolated and scheduled hooks on CLIP and conds sample to a latent
that differs from the unhooked one, and removing the hooks gives exactly the unhooked result."""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

LORA = "tiny-sd15-lora.safetensors"


def _graph() -> dict[str, Any]:
    def node(cls: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": cls, "inputs": inputs}

    return {
        "1": node("CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors"),
        "2": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "10": node("CreateHookLora", lora_name=LORA, strength_model=0.8, strength_clip=0.6),
        "11": node("CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.3),
        "12": node("CombineHooks2", hooks_A=["10", 0], hooks_B=["11", 0]),
        "13": node("CreateHookKeyframesInterpolated", strength_start=1.0, strength_end=0.2, interpolation="ease_out",
                   start_percent=0.0, end_percent=0.8, keyframes_count=4, print_keyframes=False),
        "14": node("SetHookKeyframes", hooks=["12", 0], hook_kf=["13", 0]),
        "15": node("SetClipHooks", clip=["1", 1], apply_to_conds=False, schedule_clip=True, hooks=["14", 0]),
        "3": node("CLIPTextEncode", clip=["15", 0], text="a photo of a cat"),
        "4": node("CLIPTextEncode", clip=["15", 0], text="blurry"),
        "16": node("ConditioningTimestepsRange", start_percent=0.0, end_percent=0.7),
        "17": node("PairConditioningSetProperties", positive_NEW=["3", 0], negative_NEW=["4", 0], strength=1.0,
                   set_cond_area="default", hooks=["14", 0], timesteps=["16", 0]),
        "18": node("PairConditioningSetDefaultCombine", positive=["17", 0], negative=["17", 1],
                   positive_DEFAULT=["3", 0], negative_DEFAULT=["4", 0]),
        "5": node("KSampler", model=["1", 0], seed=3, steps=4, cfg=5.0, sampler_name="euler", scheduler="normal",
                  positive=["18", 0], negative=["18", 1], latent_image=["2", 0], denoise=1.0),
        "6": node("SaveLatent", samples=["5", 0], filename_prefix="hooks_graph"),
    }


def _run(runtime: Any, graph: dict[str, Any]) -> torch.Tensor:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(runtime.registry, graph, extra_checks=builtin_checks(runtime.services))
    outcome = PromptExecutor(runtime.registry, keep_values=True).execute(valid.prompt, "hooks", {}, valid.outputs)
    assert outcome.status == "success", outcome.error
    samples: torch.Tensor = outcome.values["5"][0][0]["samples"]
    return samples


@pytest.mark.slow
def test_hook_graph_runs_and_hooks_matter(runtime: Any) -> None:
    hooked = _run(runtime, _graph())
    plain = _graph()
    for nid in ("10", "11", "12", "13", "14", "15", "16", "17", "18"):
        del plain[nid]
    for nid in ("3", "4"):
        plain[nid]["inputs"]["clip"] = ["1", 1]
    plain["5"]["inputs"].update(positive=["3", 0], negative=["4", 0])
    unhooked = _run(runtime, plain)
    assert not torch.allclose(hooked, unhooked, rtol=0, atol=1e-3)
    no_hooks = copy.deepcopy(_graph())
    no_hooks["10"]["inputs"].update(strength_model=0.0, strength_clip=0.0)
    no_hooks["11"]["inputs"]["strength_model"] = 0.0
    # (a CLIP schedule of an empty group has no ranges, so it encodes nothing: ComfyUI's behaviour too)
    no_hooks["15"]["inputs"]["schedule_clip"] = False
    assert torch.equal(_run(runtime, no_hooks), unhooked)
