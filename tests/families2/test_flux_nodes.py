"""The shared Flux golden cases posted as they are through the real nodes (UNETLoader, DualCLIPLoader flux,
VAELoader, CLIPTextEncode, FluxGuidance, ModelSamplingFlux, EmptySD3LatentImage, KSampler, SamplerCustomAdvanced),
plus the must-equal pair and the guidance nodes."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from families2_support import GOLDEN2, rel_err

DEV = "comfy__flux_dev__txt2img__euler__simple__128x128"
SCHNELL = "comfy__flux_schnell__txt2img__euler__simple__4steps"
CUSTOM = "comfy__flux_dev__sampler_custom_advanced__euler__simple"
_latents: dict[str, Any] = {}


def _png(runtime: Any, outcome: Any, node: str) -> np.ndarray:
    from PIL import Image

    saved = outcome.outputs[node]["images"][0]
    path = Path(runtime.services.paths.output_dir) / saved["subfolder"] / saved["filename"]
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("name", [DEV, SCHNELL, CUSTOM])
def test_flux_golden_through_nodes(name: str, run2: Any, runtime2: Any) -> None:
    case = json.loads((GOLDEN2 / f"{name}.json").read_text())
    outcome = run2(case["graph"], name)
    assert outcome.status == "success", outcome.error
    latent = outcome.values[str(case["latent_node"])][0][0]["samples"]
    image = outcome.values[str(case["image_node"])][0][0]
    errs = {"latent_rel": rel_err(latent.numpy(), np.load(GOLDEN2 / f"{name}.latent.npy")),
            "image_rel": rel_err(image.numpy(), np.load(GOLDEN2 / f"{name}.image.npy"))}
    diff = np.abs(_png(runtime2, outcome, str(case["save_node"])) - np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).open(GOLDEN2 / f"{name}.png").convert("RGB"), dtype=np.int16))
    errs.update(png_max=float(diff.max()), png_mean=float(diff.mean() / 255.0))
    if (GOLDEN2 / f"{name}.cond.npy").exists() and "2" in outcome.values:
        errs["cond_rel"] = rel_err(outcome.values["2"][0][0][0][0].numpy(), np.load(GOLDEN2 / f"{name}.cond.npy"))
    print(name, errs)
    assert errs["latent_rel"] < 1e-5 and errs["png_max"] <= 2 and errs["png_mean"] <= 0.01
    _latents[name] = latent


def test_flux_custom_advanced_equals_ksampler() -> None:
    """must_equal: SamplerCustomAdvanced and KSampler give the same latent bit for bit."""
    if DEV not in _latents or CUSTOM not in _latents:
        pytest.skip("needs both golden cases of this module to have run")
    assert bool((_latents[DEV] == _latents[CUSTOM]).all())


def test_flux_guidance_nodes_change_the_dev_result(run2: Any) -> None:
    """FluxGuidance / FluxDisableGuidance / CLIPTextEncodeFlux: guidance reaches the dev model (and only it)."""
    case = json.loads((GOLDEN2 / f"{DEV}.json").read_text())
    base = copy.deepcopy(case["graph"])
    base["5"]["inputs"]["steps"] = 3

    def latent(graph: dict[str, Any], pid: str) -> Any:
        out = run2(graph, pid)
        assert out.status == "success", out.error
        return out.values["5"][0][0]["samples"]

    ref = latent(base, "g35")
    other = copy.deepcopy(base)
    other["21"]["inputs"]["guidance"] = 7.0
    assert float((latent(other, "g7") - ref).abs().max()) > 1e-4
    off = copy.deepcopy(base)
    off["22"] = {"class_type": "FluxDisableGuidance", "inputs": {"conditioning": ["21", 0]}}
    off["5"]["inputs"]["positive"] = ["22", 0]
    assert float((latent(off, "goff") - ref).abs().max()) > 1e-4
    split = copy.deepcopy(base)
    split["21"] = {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip": ["41", 0], "clip_l": "a photo of a cat",
                                                                  "t5xxl": "a photo of a cat", "guidance": 3.5}}
    assert bool((latent(split, "gsplit") == ref).all())
