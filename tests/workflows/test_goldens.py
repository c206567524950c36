"""The built-in nodes, run by the executor, reproduce ComfyUI's golden latents and images (rel err <= 1e-4)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-sd15"
CKPT = "tiny-sd15.safetensors"
GOLDEN = TINY / "golden"
GRAPHS = TINY / "golden_graphs"
TOL = 1e-4


def golden_prompt(case: dict[str, Any]) -> dict[str, Any]:
    """The golden node chain as an API prompt (ids: 3 KSampler, 8 VAEDecode, 9 SaveImage)."""
    prompt: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": case["prompt"], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": case["negative"], "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": case["seed"], "steps": case["steps"], "cfg": case["cfg"], "sampler_name": case["sampler_name"],
            "scheduler": case["scheduler"], "denoise": case["denoise"], "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": case["mode"]}},
    }
    if case["mode"] == "txt2img":
        prompt["5"] = {"class_type": "EmptyLatentImage",
                       "inputs": {"width": case["width"], "height": case["height"], "batch_size": 1}}
    else:
        prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": case["init_image"]}}
        prompt["5"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        if case["mode"] == "inpaint":
            prompt["12"] = {"class_type": "LoadImageMask", "inputs": {"image": case["mask"], "channel": "red"}}
            prompt["13"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["12", 0]}}
            prompt["3"]["inputs"]["latent_image"] = ["13", 0]
    return prompt


def run_values(runtime: Any, prompt: dict[str, Any]) -> Any:
    from executor import PromptExecutor, validate_prompt

    valid = validate_prompt(runtime.registry, prompt)
    executor = PromptExecutor(runtime.registry, keep_values=True)
    outcome = executor.execute(valid.prompt, "golden", {}, valid.outputs)
    assert outcome.status == "success", outcome.error
    return outcome


def _first(outcome: Any, node_id: str) -> Any:
    return outcome.values[node_id][0][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_golden_chain(runtime: Any, rel_err: Any, name: str) -> None:
    case = json.loads((GOLDEN / f"{name}.json").read_text())
    outcome = run_values(runtime, golden_prompt(case))
    latent = _first(outcome, "3")["samples"].numpy()
    image = _first(outcome, "8").numpy()
    assert rel_err(latent, np.load(GOLDEN / f"{name}.latent.npy")) <= TOL
    assert rel_err(image, np.load(GOLDEN / f"{name}.image.npy")) <= TOL
    saved = outcome.outputs["9"]["images"][0]
    assert saved["type"] == "output" and saved["filename"].startswith(case["mode"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in GRAPHS.glob("*.json")))
def test_golden_graph_unchanged(runtime: Any, rel_err: Any, name: str) -> None:
    case = json.loads((GRAPHS / f"{name}.json").read_text())
    outcome = run_values(runtime, case["graph"])
    latent = _first(outcome, str(case["latent_node"]))["samples"].numpy()
    image = _first(outcome, str(case["image_node"])).numpy()
    assert rel_err(latent, np.load(GRAPHS / f"{name}.latent.npy")) <= TOL
    assert rel_err(image, np.load(GRAPHS / f"{name}.image.npy")) <= TOL
