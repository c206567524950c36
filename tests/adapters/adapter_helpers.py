"""Shared by the adapter tests: fixture paths, the model-folder layout, graph running and PNG comparison."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

FIX = Path(__file__).resolve().parents[1] / "fixtures"
ADA = FIX / "adapters"
GOLDEN = ADA / "golden"

LINKS = {
    "models/checkpoints/tiny-sd15.safetensors": FIX / "tiny-sd15" / "tiny-sd15.safetensors",
    "models/checkpoints/tiny-sdxl.safetensors": FIX / "families" / "tiny-sdxl.safetensors",
    "models/controlnet/tiny-control_v11p_sd15_canny_fp16.safetensors":
        ADA / "tiny-control_v11p_sd15_canny_fp16.safetensors",
    "models/controlnet/tiny-control_v11p_sd15_canny.diffusers.fp16.safetensors":
        ADA / "tiny-control_v11p_sd15_canny.diffusers.fp16.safetensors",
    "models/controlnet/tiny-control_sd15_canny_v10.safetensors": ADA / "tiny-control_sd15_canny_v10.safetensors",
    "models/controlnet/tiny-controlnet-canny-sdxl-1.0.diffusers.fp16.safetensors":
        ADA / "tiny-controlnet-canny-sdxl-1.0.diffusers.fp16.safetensors",
    "models/t2i_adapter/tiny-t2iadapter_depth_sd15v2.safetensors": ADA / "tiny-t2iadapter_depth_sd15v2.safetensors",
    "models/t2i_adapter/tiny-t2iadapter_color_sd14v1.safetensors": ADA / "tiny-t2iadapter_color_sd14v1.safetensors",
    "models/clip_vision/tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors":
        ADA / "tiny-CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
    "models/style_models/tiny-coadapter-style-sd15v1.safetensors": ADA / "tiny-coadapter-style-sd15v1.safetensors",
    "models/ipadapter/tiny-ip-adapter_sd15.safetensors": ADA / "tiny-ip-adapter_sd15.safetensors",
    "models/ipadapter/tiny-ip-adapter-plus_sd15.safetensors": ADA / "tiny-ip-adapter-plus_sd15.safetensors",
    "input/hint_edges_128x64.png": ADA / "hint_edges_128x64.png",
    "input/hint_depth_128x64.png": ADA / "hint_depth_128x64.png",
    "input/reference_128x96.png": ADA / "reference_128x96.png",
    "input/reference2_128x96.png": ADA / "reference2_128x96.png",
    "input/init_128x64.png": FIX / "tiny-sd15" / "init_128x64.png",
    "input/mask_128x64.png": FIX / "tiny-sd15" / "mask_128x64.png",
}




def run_graph(rt: Any, graph: dict[str, Any], prompt_id: str = "p") -> Any:
    """Validate (with the built-in extra checks) and execute a graph; returns the outcome."""
    from executor import PromptExecutor, validate_prompt
    from nodes.checks import builtin_checks

    valid = validate_prompt(rt.registry, graph, extra_checks=builtin_checks(rt.services))
    return PromptExecutor(rt.registry, keep_values=True).execute(valid.prompt, prompt_id, {}, valid.outputs)


def saved_png(runtime: Any, outcome: Any, save_node: str) -> Any:
    """The 8-bit RGB array SaveImage wrote."""
    from PIL import Image

    saved = outcome.outputs[save_node]["images"][0]
    out_dir = Path(runtime.services.paths.output_dir)
    return np.asarray(Image.open(out_dir / saved["subfolder"] / saved["filename"]).convert("RGB"), dtype=np.int16)


def golden_png(name: str) -> Any:
    from PIL import Image

    return np.asarray(Image.open(GOLDEN / f"comfy__{name}.png").convert("RGB"), dtype=np.int16)


def rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (the fixtures' comparison rule)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != golden {b.shape}"
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def link_models(base: Path) -> Path:
    """Symlink every fixture into ``base``'s models / input folders; returns base."""
    for rel, src in LINKS.items():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, target)
    return base
