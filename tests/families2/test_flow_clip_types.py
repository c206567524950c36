"""CLIPLoader / DualCLIPLoader types sd3 and flux on the tiny text encoders: ComfyUI's SD3 rule for absent towers
(zeros of the standard width in the pooled vector and the joined context, no T5 tokens without T5), checked against
the triple CLIP's own output; unsupported types refused at validation naming the type."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from families2_support import FAM2

L, G, T5 = (FAM2 / f"tiny-{n}.safetensors" for n in ("clip_l", "clip_g", "t5xxl_fp16"))
PROMPT = "a red cube on a (blue:1.2) table"
W = 32  # tiny CLIP-L / CLIP-G width (projection too); T5 width 80


def _encode(files: list[Path], clip_type: str = "sd3") -> tuple[torch.Tensor, torch.Tensor]:
    from engine.device import DevicePolicy
    from engine.loading import load_clip
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    clip = load_clip(files, clip_type, manager=ModelManager(DevicePolicy.cpu()))
    assert set(clip.tokenizers) == {"l", "g", "t5xxl"}  # every tokenizer, whichever towers are present
    cond, pooled = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    return cond, pooled


@pytest.fixture(scope="module")
def full() -> tuple[torch.Tensor, torch.Tensor]:
    cond, pooled = _encode([L, G, T5])
    assert cond.shape == (1, 77 + 77, 80) and pooled.shape == (1, 2 * W)
    return cond, pooled


def test_sd3_clip_l_and_g_without_t5(full: Any) -> None:
    cond, pooled = _encode([G, L])
    assert cond.shape == (1, 77, 4096)  # no T5: the CLIP part alone, padded to T5-XXL's 4096
    assert torch.equal(cond[:, :, :80], full[0][:, :77]) and not cond[:, :, 80:].any()
    assert torch.equal(pooled, full[1])


def test_sd3_clip_l_and_t5_without_g(full: Any) -> None:
    cond, pooled = _encode([T5, L])
    expected = full[0].clone()
    expected[:, :77, W:2 * W] = 0  # the CLIP-G block of the context is zeros
    assert torch.equal(cond, expected)
    assert pooled.shape == (1, W + 1280)  # CLIP-G pooled: zeros of its standard width
    assert torch.equal(pooled[:, :W], full[1][:, :W]) and not pooled[:, W:].any()


def test_sd3_single_files(full: Any) -> None:
    cond, pooled = _encode([G])
    assert cond.shape == (1, 77, 4096) and pooled.shape == (1, 768 + W)
    assert not cond[:, :, :768].any() and torch.equal(cond[:, :, 768:768 + W], full[0][:, :77, W:2 * W])
    assert not pooled[:, :768].any() and torch.equal(pooled[:, 768:], full[1][:, W:])
    cond, pooled = _encode([T5])
    assert torch.equal(cond, full[0][:, 77:]) and pooled.shape == (1, 768 + 1280) and not pooled.any()
    cond, pooled = _encode([L])
    assert torch.equal(cond[:, :, :W], full[0][:, :77, :W]) and not cond[:, :, W:].any()
    assert torch.equal(pooled[:, :W], full[1][:, :W]) and not pooled[:, W:].any()


def test_sd3_clip_g_and_t5_too_wide_for_the_tiny_t5() -> None:
    """CLIP-L's standard 768 zeros + CLIP-G do not fit the tiny T5's 80 channels: a clear error, no silent crop."""
    with pytest.raises(ValueError, match="800 wide, more than the T5 width 80"):
        _encode([G, T5])


def test_flux_and_duplicates_refused() -> None:
    from engine.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="flux CLIP needs clip_l \\+ t5xxl; missing t5xxl"):
        _encode([L], "flux")
    with pytest.raises(UnknownModelError, match="not a text encoder of a flux CLIP"):
        _encode([L, G], "flux")
    with pytest.raises(UnknownModelError, match="both clip_l"):
        _encode([L, L])


def test_dual_clip_loader_sd3_through_nodes(runtime2: Any, full: Any) -> None:
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    graph = {"1": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "tiny-t5xxl_fp16.safetensors",
                                                               "clip_name2": "tiny-clip_l.safetensors",
                                                               "type": "sd3"}},
             "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": PROMPT}}}
    valid = validate_prompt(runtime2.registry, {**graph, "3": {"class_type": "PreviewAny",
                                                               "inputs": {"source": ["2", 0]}}},
                            extra_checks=builtin_checks(runtime2.services))
    outcome = PromptExecutor(runtime2.registry, keep_values=True).execute(valid.prompt, "p", {}, valid.outputs)
    cond = outcome.values["2"][0][0]
    assert torch.equal(cond[0][0][:, :77, :W], full[0][:, :77, :W]) and not cond[0][0][:, :77, W:80].any()
    assert cond[0][1]["pooled_output"].shape == (1, W + 1280)


@pytest.mark.parametrize("node,clip_type", [("CLIPLoader", "mochi"), ("CLIPLoader", "flux2"),
                                            ("DualCLIPLoader", "hidream")])
def test_unsupported_types_refused_at_validation(runtime2: Any, node: str, clip_type: str) -> None:
    from executor import validate_prompt
    from executor.errors import PromptValidationError
    from nodes.checks import builtin_checks

    names = ({"clip_name": "tiny-t5xxl_fp16.safetensors"} if node == "CLIPLoader" else
             {"clip_name1": "tiny-t5xxl_fp16.safetensors", "clip_name2": "tiny-clip_l.safetensors"})
    graph = {"1": {"class_type": node, "inputs": {**names, "type": clip_type}},
             "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "x"}},
             "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    with pytest.raises(PromptValidationError) as info:
        validate_prompt(runtime2.registry, graph, extra_checks=builtin_checks(runtime2.services))
    errors = info.value.to_wire()["node_errors"]["1"]["errors"]
    assert errors[0]["type"] == "clip_type_unsupported"
    assert f"type {clip_type!r} is not supported" in errors[0]["details"] and node in errors[0]["details"]


def test_sd3_checkpoint_with_clips_but_no_t5(tmp_path: Path, full: Any) -> None:
    """An all-in-one SD3 file with CLIP-L and CLIP-G only (the sd3_medium_incl_clips layout, no tower config in its
    metadata): its CLIP equals DualCLIPLoader sd3 (clip_l + clip_g)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint
    from engine.model_management import ModelManager

    with safe_open(str(FAM2 / "tiny-sd35m.safetensors"), "pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
    for path, key in ((L, "clip_l"), (G, "clip_g")):
        with safe_open(str(path), "pt") as f:
            sd.update({f"text_encoders.{key}.transformer.{k}": f.get_tensor(k) for k in f.keys()})
    save_file(sd, str(tmp_path / "sd3-incl-clips.safetensors"))
    _, clip, _ = load_checkpoint(tmp_path / "sd3-incl-clips.safetensors", ModelManager(DevicePolicy.cpu()))
    assert clip is not None and set(clip.encoders) == {"clip_l", "clip_g"}
    cond, pooled = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    dual_cond, dual_pooled = _encode([L, G])
    assert torch.equal(cond, dual_cond) and torch.equal(pooled, dual_pooled)
