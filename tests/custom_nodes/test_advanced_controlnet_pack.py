"""The real Kosinkadink/ComfyUI-Advanced-ControlNet pack (pinned commit, staged from this machine's source into a
tmp custom_nodes/ at test time: `real_packs`) loads every node and runs on Loom's sampler through ComfyUI's control contract
(`comfy.controlnet` classes the pack subclasses; `engine.adapters.control_contract`).

Its main path (ACN_ControlNetLoaderAdvanced + ACN_AdvancedControlNetApply_v2, no keyframes) gives the same latent
as Loom's own ControlNetLoader + ControlNetApplyAdvanced, for a ControlNet and a T2I-Adapter; a timestep keyframe
turning the control off at 50% equals the core apply with end_percent 0.5; soft weights change the result (and
are the plain path at multiplier 1.0)."""
from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import real_packs
import torch

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CN = "tiny-control_v11p_sd15_canny_fp16.safetensors"
T2I = "tiny-t2iadapter_depth_sd15v2.safetensors"


PIN = real_packs.pin("ComfyUI-Advanced-ControlNet")
pytestmark = real_packs.skip_unless_staged(PIN)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[Any]]]:
    """(in-process runtime, the pack's load reports)."""

    from app.runner import build_runtime

    base = tmp_path_factory.mktemp("acn")
    links = {"models/checkpoints/tiny-sd15.safetensors": FIX / "tiny-sd15" / "tiny-sd15.safetensors",
             f"models/controlnet/{CN}": FIX / "adapters" / CN, f"models/controlnet/{T2I}": FIX / "adapters" / T2I,
             "input/hint_edges_128x64.png": FIX / "adapters" / "hint_edges_128x64.png",
             "input/hint_depth_128x64.png": FIX / "adapters" / "hint_depth_128x64.png"}
    for rel, src in links.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, base / rel)
    real_packs.stage(PIN, base / "custom_nodes")
    torch.set_num_threads(1)
    runtime = build_runtime(base, cpu=True)
    env, reports = real_packs.load_packs(runtime, base)
    yield runtime, reports
    real_packs.unload_packs(env)
    runtime.close()


@pytest.fixture(scope="module")
def pack(loaded: tuple[Any, list[Any]]) -> Any:
    return loaded[0]


def _core(end: float = 1.0, control: str = CN, hint: str = "hint_edges_128x64.png") -> dict[str, Any]:
    return {
        "ck": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ck", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ck", 1]}},
        "img": {"class_type": "LoadImage", "inputs": {"image": hint}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}},
        "cnl": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": control}},
        "app": {"class_type": "ControlNetApplyAdvanced",
                "inputs": {"positive": ["pos", 0], "negative": ["neg", 0], "control_net": ["cnl", 0],
                           "image": ["img", 0], "strength": 0.9, "start_percent": 0.0, "end_percent": end}},
        "ks": {"class_type": "KSampler",
               "inputs": {"model": ["ck", 0], "seed": 3, "steps": 6, "cfg": 5.0, "sampler_name": "euler",
                          "scheduler": "normal", "positive": ["app", 0], "negative": ["app", 1],
                          "latent_image": ["lat", 0], "denoise": 1.0}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ck", 2]}},
        "out": {"class_type": "PreviewImage", "inputs": {"images": ["dec", 0]}},
    }


def _pack(**kwargs: Any) -> dict[str, Any]:
    graph = _core(**kwargs)
    graph["cnl"] = {"class_type": "ACN_ControlNetLoaderAdvanced",
                    "inputs": {"cnet": graph["cnl"]["inputs"]["control_net_name"]}}
    graph["app"]["class_type"] = "ACN_AdvancedControlNetApply_v2"
    return graph


def _run(rt: Any, graph: dict[str, Any]) -> Any:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(rt.registry, graph, extra_checks=builtin_checks(rt.services))
    outcome = PromptExecutor(rt.registry, keep_values=True).execute(valid.prompt, "p", {}, valid.outputs)
    assert outcome.status == "success", (outcome.error or {}).get("exception_message")
    return outcome


def _latent(rt: Any, graph: dict[str, Any]) -> torch.Tensor:
    latent: torch.Tensor = _run(rt, graph).values["ks"][0][0]["samples"]
    return latent


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _uncontrolled(graph: dict[str, Any]) -> dict[str, Any]:
    graph["ks"]["inputs"].update(positive=["pos", 0], negative=["neg", 0])
    return graph


def _batch2(graph: dict[str, Any]) -> dict[str, Any]:
    graph["lat"]["inputs"]["batch_size"] = 2
    return graph


@pytest.fixture(scope="module")
def core(pack: Any) -> torch.Tensor:
    """The core ControlNetApplyAdvanced's latent (strength 0.9, whole schedule)."""
    return _latent(pack, _core())


def test_every_node_registers(loaded: tuple[Any, list[Any]]) -> None:
    pack, (report,) = loaded
    assert report.status == "loaded", report.error
    assert not report.refused
    assert len(report.nodes) == 46
    for name in ("ACN_ControlNetLoaderAdvanced", "ACN_AdvancedControlNetApply_v2", "TimestepKeyframe",
                 "ACN_ScaledSoftControlNetWeights", "ACN_AdvancedControlNetApply"):
        assert pack.registry.source_of(name) == report.module


def test_main_path_equals_the_core_controlnet(pack: Any, core: torch.Tensor) -> None:
    outcome = _run(pack, _pack())
    control = outcome.values["app"][0][0][0][1]["control"]
    assert type(control).__name__ == "ControlNetAdvanced", "the pack's own class runs, through get_control"
    assert _diff(outcome.values["ks"][0][0]["samples"], core) == 0.0
    assert _diff(_latent(pack, _uncontrolled(_core())), core) > 1.0, "the control changes the result"


def test_mixed_loaders_and_apply_nodes(pack: Any, core: torch.Tensor) -> None:
    pack_loader = _core()
    pack_loader["cnl"] = _pack()["cnl"]
    assert _diff(_latent(pack, pack_loader), core) == 0.0, "the pack's CONTROL_NET in the core apply node"
    core_loader = _pack()
    core_loader["cnl"] = _core()["cnl"]
    assert _diff(_latent(pack, core_loader), core) == 0.0, "Loom's CONTROL_NET in the pack's apply node"
    # chains mixing both kinds: the pack's control onto Loom's and Loom's onto the pack's, as two core applies
    two = _core()
    two["cn2"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": CN}}
    two["app2"] = {"class_type": "ControlNetApplyAdvanced",
                   "inputs": {"positive": ["app", 0], "negative": ["app", 1], "control_net": ["cn2", 0],
                              "image": ["img", 0], "strength": 0.5, "start_percent": 0.2, "end_percent": 0.8}}
    two["ks"]["inputs"].update(positive=["app2", 0], negative=["app2", 1])
    expected = _latent(pack, two)
    assert _diff(expected, core) > 1.0
    pack_second = copy.deepcopy(two)
    pack_second["cn2"] = {"class_type": "ACN_ControlNetLoaderAdvanced", "inputs": {"cnet": CN}}
    pack_second["app2"]["class_type"] = "ACN_AdvancedControlNetApply_v2"
    outcome = _run(pack, pack_second)
    control = outcome.values["app2"][0][0][0][1]["control"]
    assert type(control).__name__ == "ControlNetAdvanced"
    assert type(control.previous_controlnet).__name__ == "ControlHandle", "the chain is put back after the run"
    assert _diff(outcome.values["ks"][0][0]["samples"], expected) == 0.0
    pack_first = copy.deepcopy(two)
    pack_first["cnl"], pack_first["app"]["class_type"] = _pack()["cnl"], "ACN_AdvancedControlNetApply_v2"
    assert _diff(_latent(pack, pack_first), expected) == 0.0
    # the pack converts a T2I-Adapter it is given by reading ComfyUI's internals: Loom's handle names the fix
    from executor import PromptExecutor, validate_prompt

    t2i = _pack(control=T2I, hint="hint_depth_128x64.png")
    t2i["cnl"] = _core(control=T2I)["cnl"]
    valid = validate_prompt(pack.registry, t2i)
    outcome = PromptExecutor(pack.registry, keep_values=True).execute(valid.prompt, "p", {}, valid.outputs)
    assert outcome.status != "success"
    assert "has no ComfyUI control attribute 't2i_model'" in str(outcome.error)


def test_keyframe_turning_the_control_off_at_half_is_end_percent(pack: Any) -> None:
    graph = _pack()
    graph["tk0"] = {"class_type": "TimestepKeyframe", "inputs": {"start_percent": 0.0, "strength": 1.0}}
    graph["tk1"] = {"class_type": "TimestepKeyframe",
                    "inputs": {"start_percent": 0.5, "strength": 0.0, "prev_timestep_kf": ["tk0", 0]}}
    graph["app"]["inputs"]["timestep_kf"] = ["tk1", 0]
    keyed = _latent(pack, graph)
    assert _diff(keyed, _latent(pack, _core(end=0.5))) == 0.0
    assert _diff(keyed, _latent(pack, _core())) > 0.1, "the keyframe changed the result"


def test_soft_weights(pack: Any, core: torch.Tensor) -> None:
    full = core
    graph = _pack()
    graph["w"] = {"class_type": "ACN_ScaledSoftControlNetWeights", "inputs": {"base_multiplier": 0.825}}
    graph["app"]["inputs"]["weights_override"] = ["w", 0]
    assert _diff(_latent(pack, graph), full) > 1.0
    flat = copy.deepcopy(graph)
    flat["w"]["inputs"]["base_multiplier"] = 1.0
    assert _diff(_latent(pack, flat), full) == 0.0, "multiplier 1.0: every output weighted 1"


def test_uncond_multiplier_zero_is_control_on_the_positive_only(pack: Any, core: torch.Tensor) -> None:
    """The weights' uncond_multiplier scales the negative rows of the batched call (cond_or_uncond)."""
    graph = _pack()
    graph["w"] = {"class_type": "ACN_ScaledSoftControlNetWeights",
                  "inputs": {"base_multiplier": 1.0, "uncond_multiplier": 0.0}}
    graph["app"]["inputs"]["weights_override"] = ["w", 0]
    positive_only = _core()
    positive_only["ks"]["inputs"]["negative"] = ["neg", 0]
    expected = _latent(pack, positive_only)
    got = _latent(pack, graph)
    # the negative runs in its own model call there: float noise only
    assert _diff(got, expected) <= 1e-5 * float(expected.abs().max())
    assert _diff(got, core) > 1.0


def test_mask_and_latent_keyframes(pack: Any, core: torch.Tensor) -> None:
    graph = _pack()
    graph["m"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 128, "height": 64}}
    graph["app"]["inputs"]["mask_optional"] = ["m", 0]
    assert _diff(_latent(pack, graph), core) == 0.0, "an all-ones mask keeps the control"
    graph["m"]["inputs"]["value"] = 0.0
    assert _diff(_latent(pack, graph), _latent(pack, _uncontrolled(_core()))) == 0.0, "all-zeros removes it"
    # a latent keyframe on batch index 0 only (null strength 0 elsewhere): row 0 controlled, row 1 not
    keyed = _batch2(_pack())
    keyed["lk"] = {"class_type": "LatentKeyframe", "inputs": {"batch_index": 0, "strength": 1.0}}
    keyed["tk"] = {"class_type": "TimestepKeyframe",
                   "inputs": {"start_percent": 0.0, "latent_keyframe": ["lk", 0], "null_latent_kf_strength": 0.0}}
    keyed["app"]["inputs"]["timestep_kf"] = ["tk", 0]
    rows = _latent(pack, keyed)
    controlled = _latent(pack, _batch2(_core()))
    assert _diff(rows[0], controlled[0]) == 0.0
    assert _diff(rows[1], _latent(pack, _uncontrolled(_batch2(_core())))[1]) == 0.0
    assert _diff(rows[1], controlled[1]) > 1.0


def test_deprecated_and_single_apply_nodes(pack: Any, core: torch.Tensor) -> None:
    old = _pack()
    old["app"]["class_type"] = "ACN_AdvancedControlNetApply"
    assert _diff(_latent(pack, old), core) == 0.0
    single = _pack()
    single["app"] = {"class_type": "ACN_AdvancedControlNetApplySingle_v2",
                     "inputs": {"conditioning": ["pos", 0], "control_net": ["cnl", 0], "image": ["img", 0],
                                "strength": 0.9, "start_percent": 0.0, "end_percent": 1.0}}
    single["ks"]["inputs"]["negative"] = ["neg", 0]
    legacy = _core()  # ComfyUI's old ControlNetApply: the control also reaches the negative (apply_to_uncond)
    legacy["app"] = {"class_type": "ControlNetApply",
                     "inputs": {"conditioning": ["pos", 0], "control_net": ["cnl", 0], "image": ["img", 0],
                                "strength": 0.9}}
    legacy["ks"]["inputs"]["negative"] = ["neg", 0]
    assert _diff(_latent(pack, single), _latent(pack, legacy)) == 0.0


def test_t2i_adapter_through_the_pack(pack: Any) -> None:
    core = _latent(pack, _core(control=T2I, hint="hint_depth_128x64.png"))
    outcome = _run(pack, _pack(control=T2I, hint="hint_depth_128x64.png"))
    assert type(outcome.values["app"][0][0][0][1]["control"]).__name__ == "T2IAdapterAdvanced"
    assert _diff(outcome.values["ks"][0][0]["samples"], core) == 0.0
    # per-level T2I weights: all 1.0 is the plain adapter, all 0.0 no adapter, the soft preset something between
    weighted = _pack(control=T2I, hint="hint_depth_128x64.png")
    levels = {f"input_{i}": 1.0 for i in range(4)}
    weighted["w"] = {"class_type": "ACN_CustomT2IAdapterWeights", "inputs": levels}
    weighted["app"]["inputs"]["weights_override"] = ["w", 0]
    assert _diff(_latent(pack, weighted), core) == 0.0
    weighted["w"]["inputs"] = {k: 0.0 for k in levels}
    uncontrolled = _latent(pack, _uncontrolled(_core()))
    assert _diff(_latent(pack, weighted), uncontrolled) == 0.0
    weighted["w"] = {"class_type": "ACN_SoftT2IAdapterWeights",
                     "inputs": {"input_0": 0.25, "input_1": 0.62, "input_2": 0.825, "input_3": 1.0}}
    soft = _latent(pack, weighted)
    assert _diff(soft, core) > 1.0 and _diff(soft, uncontrolled) > 1.0


def test_what_loom_cannot_run_is_named(pack: Any) -> None:
    """The pack's reference ControlNet needs ComfyUI's hook system: it fails naming it, not silently."""
    from executor import PromptExecutor, validate_prompt

    graph = _pack()
    graph["cnl"] = {"class_type": "ACN_ReferenceControlNet",
                    "inputs": {"reference_type": "reference_attn", "style_fidelity": 0.5, "ref_weight": 1.0}}
    valid = validate_prompt(pack.registry, graph)
    outcome = PromptExecutor(pack.registry, keep_values=True).execute(valid.prompt, "p", {}, valid.outputs)
    assert outcome.status != "success"
    assert "comfy.hooks.HookGroup: ComfyUI's hook system is not provided by Loom" in str(outcome.error)
