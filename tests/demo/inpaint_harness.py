"""Run the shipped 9-channel inpainting workflow (`workflows/inpaint_model.json`) on demo inpaint cases."""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
from demo_harness import WORKFLOWS, DemoGraphRunner

from engine.demo.inpaint_score import InpaintCase, InpaintReading, read_inpaint


def inpaint_workflow() -> dict[str, Any]:
    """The shipped API-format graph, unchanged (its checkpoint name is the installed inpainting file's)."""
    graph: dict[str, Any] = json.loads((WORKFLOWS / "inpaint_model.json").read_text())
    return graph


def _of(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    (node,) = [n for n in graph.values() if n["class_type"] == class_type]
    return node["inputs"]  # type: ignore[no-any-return]


def case_graph(runner: DemoGraphRunner, case: InpaintCase, seed: int, *, ckpt_name: str | None = None,
               noise_mask: bool = True, paste_back: bool = True, prompt: str | None = None,
               **sampler: Any) -> dict[str, Any]:
    """The shipped graph with the case's source and mask as inputs, its prompt, the seed and any KSampler
    inputs; `ckpt_name` swaps the checkpoint; `paste_back=False` saves the VAE decode itself instead of the
    workflow's ImageCompositeMasked result (to see what the model did outside the mask)."""
    graph = copy.deepcopy(inpaint_workflow())
    tag = f"{case.kind}_{case.scene.shape}_{case.scene.colour}_{case.scene.background}"
    _of(graph, "LoadImage")["image"] = runner.add_input(f"case_{tag}.png", case.source)
    mask = np.repeat(case.mask[..., None], 3, axis=2)
    _of(graph, "LoadImageMask")["image"] = runner.add_input(f"case_{tag}_mask.png", mask)
    _of(graph, "InpaintModelConditioning")["noise_mask"] = noise_mask
    positive = next(n for n in graph.values() if n.get("_meta", {}).get("title") == "Positive prompt")
    positive["inputs"]["text"] = prompt if prompt is not None else case.prompt
    if ckpt_name is not None:
        _of(graph, "CheckpointLoaderSimple")["ckpt_name"] = ckpt_name
    if not paste_back:
        decoded = next(nid for nid, n in graph.items() if n["class_type"] == "VAEDecode")
        _of(graph, "SaveImage")["images"] = [decoded, 0]
    ks = _of(graph, "KSampler")
    ks["seed"] = seed
    ks.update(sampler)
    return graph


def run_case(runner: DemoGraphRunner, case: InpaintCase, seed: int, **options: Any) -> tuple[np.ndarray, InpaintReading]:
    """The result image of one case and its reading."""
    image = runner.run(case_graph(runner, case, seed, **options))
    return image, read_inpaint(case, image)
