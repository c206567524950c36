"""The extra loaders in API prompts, validated with the built-in checks and run by the real executor."""
from __future__ import annotations

from typing import Any

import torch

SEED = {"seed": 7, "steps": 2, "cfg": 6.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}


def _run(registry: Any, prompt: dict[str, Any]) -> Any:
    from executor.testing import run_graph
    from executor.validation import validate_prompt
    from nodes.checks import builtin_checks

    prompt = {**prompt, "10": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}}}
    services = registry.get("CheckpointLoaderSimple").services
    valid = validate_prompt(registry, prompt, extra_checks=builtin_checks(services))
    assert not valid.node_errors
    return run_graph(registry, prompt)


def test_hypernetwork_and_gligen_graph(registry: Any, one_thread: None) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "HypernetworkLoader", "inputs": {
            "model": ["1", 0], "hypernetwork_name": "tiny-sd15-hypernetwork.pt", "strength": 0.8}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a photo of a cat"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "5": {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "tiny-gligen-sd15-textbox.safetensors"}},
        "6": {"class_type": "GLIGENTextBoxApply", "inputs": {
            "conditioning_to": ["3", 0], "clip": ["1", 1], "gligen_textbox_model": ["5", 0], "text": "a dog",
            "width": 64, "height": 32, "x": 16, "y": 8}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["6", 0], "negative": ["4", 0],
                                                  "latent_image": ["7", 0], **SEED}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    }
    run = _run(registry, prompt)
    image = run.value("9")
    assert image.shape == (1, 64, 128, 3) and torch.isfinite(image).all()


def test_instruct_pix2pix_graph(registry: Any, one_thread: None) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny-sd15-ip2p.safetensors",
                                                    "weight_dtype": "default"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "make it a dog"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 64, "batch_size": 1, "color": 0x3366CC}},
        "6": {"class_type": "InstructPixToPixConditioning", "inputs": {
            "positive": ["3", 0], "negative": ["4", 0], "vae": ["1", 2], "pixels": ["5", 0]}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["6", 0], "negative": ["6", 1],
                                                  "latent_image": ["6", 2], **SEED}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    }
    run = _run(registry, prompt)
    image = run.value("9")
    assert image.shape == (1, 64, 128, 3) and torch.isfinite(image).all()
