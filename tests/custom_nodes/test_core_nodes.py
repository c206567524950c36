"""Packs built on Loom's real core nodes and engine, through ComfyUI's module names."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from executor.testing import run_graph, run_node

CHECKPOINT = Path(__file__).parents[1] / "fixtures" / "tiny-sd15" / "tiny-sd15.safetensors"


@pytest.fixture
def core(packs):
    from engine.paths import ModelPaths
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    torch.set_num_threads(1)
    paths = ModelPaths(packs.base)
    (packs.base / "models" / "checkpoints").mkdir(parents=True)
    os.symlink(CHECKPOINT, packs.base / "models" / "checkpoints" / "tiny.safetensors")
    register_builtin_nodes(packs.registry, NodeServices(paths=paths))
    packs.environment.handles.paths = paths
    return packs


def test_core_node_subclass_and_name_lists(core) -> None:
    report = core.load("core_subclass_pack")["core_subclass_pack"]
    assert report.status == "loaded", report.error or report.refused
    (latent,) = run_node(core.registry.get("BigLatent"), width=64, height=32).result
    assert latent["samples"].shape == (1, 4, 8, 16)
    import comfy.samplers

    import engine.sampling
    import nodes

    assert comfy.samplers.KSampler.SAMPLERS == list(engine.sampling.SAMPLER_NAMES)
    assert comfy.samplers.KSampler.SCHEDULERS == list(engine.sampling.SCHEDULER_NAMES)
    assert nodes.KSampler is core.registry.get("KSampler")
    assert nodes.NODE_CLASS_MAPPINGS["VAEDecode"] is core.registry.get("VAEDecode")
    info = core.registry.object_info()["PackCheckpointLoader"]
    assert info["input"]["required"]["ckpt_name"][0] == ["tiny.safetensors"]


@pytest.mark.slow
def test_pack_sampler_matches_the_builtin_ksampler_bit_for_bit(core) -> None:
    core.load("core_subclass_pack")
    clip = ["1", 1]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "2": {"class_type": "PackCheckpointLoader", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": clip}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": clip}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 42, "steps": 2, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "PackSampler", "inputs": {
            "model": ["2", 0], "seed": 42, "steps": 2, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["2", 2]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    run = run_graph(core.registry, prompt)
    builtin, pack = run.value("6")["samples"], run.value("7")["samples"]
    assert builtin.shape == (1, 4, 8, 8)
    assert torch.equal(builtin, pack)
    assert not torch.equal(builtin, torch.zeros_like(builtin))
    assert torch.equal(run.value("8"), run.value("10"))
