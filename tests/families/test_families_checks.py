"""Family checks before anything runs: wrong-family LoRA, SDXL text node on an SD1 CLIP, cross-family
conditioning and latents reaching a sampler; each a validation error naming the nodes and files."""
from __future__ import annotations

from typing import Any

import pytest


def _validate(runtime: Any, graph: dict[str, Any]) -> dict[str, Any]:
    """node_errors of the graph ({} when it validates)."""
    from executor import PromptValidationError, validate_prompt
    from nodes.checks import builtin_checks

    try:
        validate_prompt(runtime.registry, graph, extra_checks=builtin_checks(runtime.services))
    except PromptValidationError as err:
        return dict(err.to_wire()["node_errors"])
    return {}


def _graph(ckpt: str = "tiny-sd15.safetensors", cond_ckpt: str | None = None, lora: str | None = None,
           latent_ckpt: str | None = None) -> dict[str, Any]:
    g: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 2, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["2", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    if cond_ckpt:
        g["10"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": cond_ckpt}}
        g["2"]["inputs"]["clip"] = ["10", 1]
    if lora:
        g["3"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora,
                                                         "strength_model": 1.0, "strength_clip": 1.0}}
        g["5"]["inputs"]["model"] = ["3", 0]
        g["2"]["inputs"]["clip"] = ["3", 1]
    if latent_ckpt:
        g["11"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": latent_ckpt}}
        g["12"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["11", 1]}}
        g["13"] = {"class_type": "KSampler", "inputs": {**g["5"]["inputs"], "model": ["11", 0],
                                                        "positive": ["12", 0], "negative": ["12", 0]}}
        g["5"]["inputs"]["latent_image"] = ["13", 0]
    return g


@pytest.mark.parametrize("ckpt,lora", [("tiny-sd15.safetensors", "tiny-sd15-lora.safetensors"),
                                       ("tiny-sdxl.safetensors", "tiny-sdxl-lora.safetensors")])
def test_matching_lora_validates(runtime: Any, ckpt: str, lora: str) -> None:
    assert _validate(runtime, _graph(ckpt, lora=lora)) == {}


@pytest.mark.parametrize("ckpt,lora", [("tiny-sd15.safetensors", "tiny-sdxl-lora.safetensors"),
                                       ("tiny-sdxl.safetensors", "tiny-sd15-lora.safetensors")])
def test_wrong_family_lora_is_refused(runtime: Any, ckpt: str, lora: str) -> None:
    errors = _validate(runtime, _graph(ckpt, lora=lora))
    assert list(errors) == ["3"]
    (err,) = errors["3"]["errors"]
    assert err["type"] == "lora_family_mismatch"
    assert lora in err["details"] and ckpt in err["details"] and "node #1" in err["details"]
    assert err["extra_info"]["input_name"] == "lora_name"


def test_sdxl_text_node_on_sd1_clip(runtime: Any) -> None:
    g = _graph()
    g["2"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "width": 64, "height": 64, "crop_w": 0, "crop_h": 0, "target_width": 64, "target_height": 64,
        "text_g": "a cat", "text_l": "a cat", "clip": ["1", 1]}}
    errors = _validate(runtime, g)
    (err,) = errors["2"]["errors"]
    assert err["type"] == "clip_family_mismatch" and "tiny-sd15.safetensors" in err["details"]
    g["1"]["inputs"]["ckpt_name"] = "tiny-sdxl.safetensors"
    assert _validate(runtime, g) == {}


def test_refiner_text_node_accepts_refiner_clip(runtime: Any) -> None:
    g = _graph("tiny-sdxl-refiner.safetensors")
    g["2"] = {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
        "ascore": 6.0, "width": 64, "height": 64, "text": "a cat", "clip": ["1", 1]}}
    assert _validate(runtime, g) == {}


def test_conditioning_from_another_family(runtime: Any) -> None:
    errors = _validate(runtime, _graph("tiny-sdxl.safetensors", cond_ckpt="tiny-sd15.safetensors"))
    # one error per input: the width check's (text width 32 vs context 80) or the family check's
    problems = [e for e in errors["5"]["errors"]
                if e["type"] in ("conditioning_family_mismatch", "text_encoder_mismatch")]
    assert len(problems) == 2
    assert {e["extra_info"]["input_name"] for e in problems} == {"positive", "negative"}
    assert "tiny-sd15.safetensors" in problems[0]["details"] and "tiny-sdxl.safetensors" in problems[0]["details"]


def test_latent_from_another_family(runtime: Any) -> None:
    errors = _validate(runtime, _graph("tiny-sdxl.safetensors", latent_ckpt="tiny-sd15.safetensors"))
    (err,) = [e for e in errors["5"]["errors"] if e["type"] == "latent_family_mismatch"]
    assert "node #11" in err["details"] and "tiny-sd15.safetensors" in err["details"]
    # SDXL base latents are fine for the refiner (same latent space)
    assert _validate(runtime, _graph("tiny-sdxl-refiner.safetensors", latent_ckpt="tiny-sdxl.safetensors")) == {}


def test_conditioning_of_equal_width_from_another_family(runtime: Any) -> None:
    # tiny SD1.5 CLIP-L and tiny SD2.1 OpenCLIP-H are both 32 wide: only the family check sees the mix-up
    errors = _validate(runtime, _graph("tiny-sd21v.safetensors", cond_ckpt="tiny-sd15.safetensors"))
    problems = errors["5"]["errors"]
    assert {e["type"] for e in problems} == {"conditioning_family_mismatch"}
    assert {e["extra_info"]["input_name"] for e in problems} == {"positive", "negative"}
    assert "node #10 (CheckpointLoaderSimple 'tiny-sd15.safetensors', sd15)" in problems[0]["details"]
    assert "node #1 (CheckpointLoaderSimple 'tiny-sd21v.safetensors', sd20)" in problems[0]["details"]
