"""The real cubiq/ComfyUI_IPAdapter_plus pack (pinned commit, copied into a tmp custom_nodes/ at test time) loads
unchanged and reproduces ComfyUI's IP-Adapter golden; its attention patch agrees with the built-in path."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_helpers import GOLDEN, golden_png, link_models, run_graph, saved_png
from ipadapter_pack import export_pack, load_pack, pack_mirror, torchvision_stub, unload_pack

NAME = "ipadapter__simple_w0.8__euler__normal"
MIRROR = pack_mirror()
pytestmark = pytest.mark.skipif(MIRROR is None, reason="no git mirror of cubiq/ComfyUI_IPAdapter_plus at the "
                                "pinned commit (set LOOM_IPADAPTER_REPO to its git directory)")


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from app.runner import build_runtime

    assert MIRROR is not None
    base = link_models(tmp_path_factory.mktemp("ipadapter"))
    export_pack(MIRROR, base / "custom_nodes")
    torch.set_num_threads(1)
    runtime = build_runtime(base, cpu=True)
    stub = torchvision_stub()
    next(stub)
    env, reports = load_pack(runtime, base)
    runtime.reports = reports
    yield runtime
    unload_pack(env)
    stub.close()
    runtime.close()


def _case() -> dict[str, Any]:
    return json.loads((GOLDEN / f"comfy__{NAME}.json").read_text())


def test_pack_loads_unchanged_with_its_nodes(pack: Any) -> None:
    (report,) = pack.reports
    assert report.status == "loaded", report.error
    for name in ("IPAdapterUnifiedLoader", "IPAdapter", "IPAdapterAdvanced", "IPAdapterModelLoader"):
        assert pack.registry.source_of(name) == report.module


def test_golden_through_the_real_pack(pack: Any, rel: Any) -> None:
    case = _case()
    outcome = run_graph(pack, case["graph"], NAME)
    assert outcome.status == "success", outcome.error
    latent = outcome.values["5"][0][0]["samples"].numpy()
    assert rel(latent, np.load(GOLDEN / f"comfy__{NAME}.latent.npy")) < 1e-4
    diff = np.abs(saved_png(pack, outcome, "7") - golden_png(NAME))
    assert int(diff.max()) <= 2 and float(diff.mean()) <= 0.01

    # the image tokens the pack put in its attn2 patches: ComfyUI's, and the patch set on every SD1.5 attn2
    model = outcome.values["41"][0][0]
    table = model.model_options["transformer_options"]["patches_replace"]["attn2"]
    assert sorted(table) == sorted([("input", i) for i in (1, 2, 4, 5, 7, 8)]
                                   + [("output", i) for i in range(3, 12)] + [("middle", 1)])
    kwargs = table[("input", 1)].kwargs[0]
    assert rel(kwargs["cond"].float().numpy(), np.load(GOLDEN / f"comfy__{NAME}.ipadapter.cond.npy")) < 1e-5
    assert rel(kwargs["uncond"].float().numpy(), np.load(GOLDEN / f"comfy__{NAME}.ipadapter.uncond.npy")) < 1e-5
    # the input model is not patched (clone copy semantics)
    assert "patches_replace" not in outcome.values["1"][0][0].model_options["transformer_options"]


def test_pack_attention_patch_at_weight_zero_is_the_builtin_path(pack: Any) -> None:
    """Every attn2 goes through the pack's Attn2Replace (optimized_attention + its ip term); at weight 0 the ip term
    is 0, so the image must equal the unpatched graph's bit for bit... up to the attention function, which is
    the same one the UNet uses."""
    case = _case()
    zero = copy.deepcopy(case["graph"])
    zero["41"]["inputs"]["weight"] = 0.0
    plain = copy.deepcopy(case["graph"])
    for node in ("12", "40", "41"):
        del plain[node]
    plain["5"]["inputs"]["model"] = ["1", 0]
    a, b = run_graph(pack, zero, "w0"), run_graph(pack, plain, "plain")
    assert a.status == b.status == "success", (a.error, b.error)
    assert np.array_equal(a.values["5"][0][0]["samples"].numpy(), b.values["5"][0][0]["samples"].numpy())


def test_plus_adapter_and_style_transfer_run(pack: Any) -> None:
    """IPAdapterAdvanced with the plus adapter (Resampler on penultimate states, black-image uncond), style transfer
    weights and K+V scaling: runs through the pack and moves the image."""
    case = _case()
    graph = copy.deepcopy(case["graph"])
    graph["40"]["inputs"]["preset"] = "PLUS (high strength)"
    graph["41"] = {"class_type": "IPAdapterAdvanced", "inputs": {
        "model": ["40", 0], "ipadapter": ["40", 1], "image": ["12", 0], "weight": 1.0,
        "weight_type": "style transfer", "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0,
        "embeds_scaling": "K+V"}}
    out = run_graph(pack, graph, "plus")
    assert out.status == "success", out.error
    base = run_graph(pack, case["graph"], "basic")
    assert not np.array_equal(out.values["5"][0][0]["samples"].numpy(), base.values["5"][0][0]["samples"].numpy())
    assert Path(pack.services.paths.get_full_path("ipadapter", "tiny-ip-adapter-plus_sd15.safetensors")).is_file()


def test_ipadapter_of_another_family_fails_validation_naming_both_files(pack: Any) -> None:
    from safetensors.torch import save_file

    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    folder = Path(pack.services.paths.get_folder_paths("clip_vision")[0])
    save_file({"visual_projection.weight": torch.zeros(64, 48),
               "vision_model.embeddings.patch_embedding.weight": torch.zeros(48, 3, 14, 14)},
              str(folder / "other-encoder.safetensors"))
    graph = _case()["graph"]
    graph["40"] = {"class_type": "IPAdapterModelLoader",
                   "inputs": {"ipadapter_file": "tiny-ip-adapter_sd15.safetensors"}}
    graph["42"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "other-encoder.safetensors"}}
    graph["41"] = {"class_type": "IPAdapterAdvanced", "inputs": {
        "model": ["1", 0], "ipadapter": ["40", 0], "image": ["12", 0], "clip_vision": ["42", 0], "weight": 1.0,
        "weight_type": "linear", "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0,
        "embeds_scaling": "V only"}}
    xl = copy.deepcopy(graph)
    xl["1"]["inputs"]["ckpt_name"] = "tiny-sdxl.safetensors"
    for g, expected in ((graph, {"clip_vision_mismatch"}), (xl, {"clip_vision_mismatch", "ipadapter_family_mismatch"})):
        with pytest.raises(PromptValidationError) as info:
            validate_prompt(pack.registry, g, extra_checks=builtin_checks(pack.services))
        errors = info.value.to_wire()["node_errors"]["41"]["errors"]
        assert {e["type"] for e in errors} >= expected
        for e in errors:
            if e["type"] == "clip_vision_mismatch":
                assert "other-encoder.safetensors" in e["details"] and "tiny-ip-adapter_sd15" in e["details"]
            if e["type"] == "ipadapter_family_mismatch":
                assert "tiny-sdxl.safetensors" in e["details"] and "tiny-ip-adapter_sd15" in e["details"]
    graph["42"]["inputs"]["clip_name"] = "tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"
    assert validate_prompt(pack.registry, graph, extra_checks=builtin_checks(pack.services)).outputs
