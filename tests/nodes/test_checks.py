"""Validation-time checks: huge sizes, text encoder vs UNet width, latent vs UNet channels."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from executor import PromptValidationError, validate_prompt
from nodes.checks import builtin_checks

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _graph(ckpt_model: str, ckpt_clip: str, width: int = 128, height: int = 64, batch: int = 1) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_model}},
        "40": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_clip}},
        "41": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["40", 1], "stop_at_clip_layer": -1}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["41", 0]}},
        "61": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["6", 0], "width": 64, "height": 64,
                                                               "x": 0, "y": 0, "strength": 1.0}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["61", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t"}},
    }


@pytest.fixture()
def ckpts(services: Any) -> Any:
    ck = Path(services.paths.get_folder_paths("checkpoints")[0])
    os.symlink(FIX / "tiny-sd15" / "tiny-sd15.safetensors", ck / "sd15.safetensors")
    os.symlink(FIX / "families" / "tiny-sdxl.safetensors", ck / "sdxl.safetensors")
    return services


def _errors(registry: Any, services: Any, prompt: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(PromptValidationError) as info:
        validate_prompt(registry, prompt, extra_checks=builtin_checks(services))
    return info.value.to_wire()["node_errors"]


def test_matching_graph_passes(registry: Any, ckpts: Any) -> None:
    valid = validate_prompt(registry, _graph("sd15.safetensors", "sd15.safetensors"),
                            extra_checks=builtin_checks(ckpts))
    assert valid.outputs == ["9"] and not valid.node_errors


def test_huge_size_is_refused_before_allocation(registry: Any, ckpts: Any) -> None:
    errs = _errors(registry, ckpts, _graph("sd15.safetensors", "sd15.safetensors", 16384, 16384))
    (err,) = errs["5"]["errors"]
    assert err["type"] == "image_too_large" and "16384x16384" in err["details"]
    assert "node #5 (EmptyLatentImage)" in err["details"] and err["extra_info"]["input_name"] == "width"
    errs = _errors(registry, ckpts, _graph("sd15.safetensors", "sd15.safetensors", 4096, 4096, batch=8))
    assert "batch 8" in errs["5"]["errors"][0]["details"]
    ckpts.max_pixels = 64 * 64
    errs = _errors(registry, ckpts, _graph("sd15.safetensors", "sd15.safetensors", 128, 64))
    assert errs["5"]["errors"][0]["type"] == "image_too_large"


def test_text_encoder_width_mismatch_names_both_nodes(registry: Any, ckpts: Any) -> None:
    errs = _errors(registry, ckpts, _graph("sd15.safetensors", "sdxl.safetensors"))
    (err,) = errs["3"]["errors"]
    assert err["type"] == "text_encoder_mismatch" and err["extra_info"]["input_name"] == "positive"
    assert "node #40 (CheckpointLoaderSimple 'sdxl.safetensors')" in err["details"]
    assert "node #4 (CheckpointLoaderSimple 'sd15.safetensors')" in err["details"]
    assert "width 80" in err["details"] and "context width 32" in err["details"]


def test_latent_channel_mismatch(registry: Any, ckpts: Any, services: Any) -> None:
    vae_dir = Path(services.paths.get_folder_paths("vae")[0])
    save_file({"decoder.conv_in.weight": torch.zeros(8, 16, 3, 3)}, str(vae_dir / "vae16.safetensors"))
    (Path(services.paths.input_dir) / "x.png").write_bytes(b"")
    prompt = _graph("sd15.safetensors", "sd15.safetensors")
    prompt["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": "vae16.safetensors"}}
    prompt["21"] = {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
    prompt["22"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["20", 0]}}
    prompt["23"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["22", 0], "mask": ["21", 1]}}
    prompt["3"]["inputs"]["latent_image"] = ["23", 0]
    errs = _errors(registry, ckpts, prompt)
    (err,) = errs["3"]["errors"]
    assert err["type"] == "latent_channel_mismatch"
    assert "node #20 (VAELoader 'vae16.safetensors')" in err["details"] and "16-channel" in err["details"]


class _PackCheckpointLoader:
    """A pack's loader: not a built-in class name, but it declares its file input."""

    CATEGORY = "test"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    FILE_INPUTS = {"ckpt_name": "checkpoints"}

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (["sd15.safetensors", "sdxl.safetensors"],)}}

    def load(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        raise AssertionError("validation must not load anything")


def test_checks_follow_a_custom_loaders_file_inputs(registry: Any, ckpts: Any) -> None:
    registry.register("PackCheckpointLoader", _PackCheckpointLoader)
    prompt = _graph("sd15.safetensors", "sdxl.safetensors")
    prompt["40"]["class_type"] = "PackCheckpointLoader"
    (err,) = _errors(registry, ckpts, prompt)["3"]["errors"]
    assert err["type"] == "text_encoder_mismatch"
    assert "node #40 (PackCheckpointLoader 'sdxl.safetensors')" in err["details"]
    # without the declaration the loader is unknown to the checks: nothing to compare, the graph validates
    registry.register("UndeclaredLoader", type("Undeclared", (_PackCheckpointLoader,), {"FILE_INPUTS": None}))
    prompt["40"]["class_type"] = "UndeclaredLoader"
    assert not validate_prompt(registry, prompt, extra_checks=builtin_checks(ckpts)).node_errors


def test_each_header_is_read_once_per_validation(registry: Any, ckpts: Any, monkeypatch: Any) -> None:
    import nodes.check_facts as facts

    reads: list[str] = []
    real = facts.read_safetensors_header

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(facts, "read_safetensors_header", counting)
    errs = _errors(registry, ckpts, _graph("sd15.safetensors", "sdxl.safetensors"))
    assert [e["type"] for e in errs["3"]["errors"]] == ["text_encoder_mismatch"]
    assert sorted(reads) == ["sd15.safetensors", "sdxl.safetensors"]


def test_each_file_is_looked_up_once_per_validation_and_again_next_time(registry: Any, ckpts: Any,
                                                                         monkeypatch: Any) -> None:
    """The checks ask about a checkpoint several times (header, family, text width); one lookup and stat per
    validation serve them all, and the next validation looks again (a replaced file is noticed)."""
    from engine.paths import ModelPaths

    lookups: list[str] = []
    real = ModelPaths.get_full_path

    def counting(self: Any, key: str, name: str) -> Any:
        lookups.append(name)
        return real(self, key, name)

    monkeypatch.setattr(ModelPaths, "get_full_path", counting)
    checks = builtin_checks(ckpts)
    prompt = _graph("sd15.safetensors", "sdxl.safetensors")
    with pytest.raises(PromptValidationError):
        validate_prompt(registry, prompt, extra_checks=checks)
    assert sorted(lookups) == ["sd15.safetensors", "sdxl.safetensors"]
    ck = Path(ckpts.paths.get_folder_paths("checkpoints")[0])
    os.remove(ck / "sdxl.safetensors")  # the CLIP's file now holds SD1.5 weights: the mismatch is gone
    os.symlink(FIX / "tiny-sd15" / "tiny-sd15.safetensors", ck / "sdxl.safetensors")
    lookups.clear()
    validate_prompt(registry, prompt, extra_checks=checks)
    assert sorted(lookups) == ["sd15.safetensors", "sdxl.safetensors"]
