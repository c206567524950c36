"""/history records the ControlNets a prompt applied (file, strength, start / end percent and the sampler steps each
acted on) under Loom's own ``loom`` key, through the real server, nodes and engine on the tiny fixtures."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from server_helpers import wait_history

from app.config import Config
from server import create_app

V11 = "tiny-control_v11p_sd15_canny_fp16.safetensors"
V10 = "tiny-control_sd15_canny_v10.safetensors"
STEPS = 8


def _graph() -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "hint_edges_128x64.png"}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "hint_depth_128x64.png"}},
        "20": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": V11}},
        "21": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["2", 0], "negative": ["3", 0], "control_net": ["20", 0], "image": ["10", 0],
            "strength": 0.7, "start_percent": 0.0, "end_percent": 1.0}},
        "22": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": V10}},
        "23": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["21", 0], "negative": ["21", 1], "control_net": ["22", 0], "image": ["11", 0],
            "strength": 0.5, "start_percent": 0.2, "end_percent": 0.6}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 5, "steps": STEPS, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["23", 0], "negative": ["23", 1], "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "cnhist"}},
    }


def _sd1_sigmas() -> np.ndarray:
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    acp = np.cumprod(1.0 - betas)
    return np.asarray(((1 - acp) / acp) ** 0.5, dtype=np.float32)


def _percent_to_sigma(p: float) -> float:
    """ComfyUI's ModelSamplingDiscrete.percent_to_sigma, written out (log-linear between table entries)."""
    if p <= 0.0:
        return 999999999.9
    if p >= 1.0:
        return 0.0
    log_sigmas = np.log(_sd1_sigmas())
    t = (1.0 - p) * 999
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return float(np.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]))


def _normal_schedule(steps: int) -> list[float]:
    """ComfyUI's `normal` scheduler over the SD1 table (`steps` timesteps linear from 999 to 0, sigma by
    log-linear interpolation, then 0)."""
    log_sigmas = np.log(_sd1_sigmas())
    out = []
    for t in np.linspace(999, 0, steps):
        lo, hi = math.floor(t), math.ceil(t)
        w = t - lo
        out.append(float(np.float32(np.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]))))
    return out + [0.0]


async def test_history_records_each_control_and_the_steps_it_acted_on(aiohttp_client: Any, tmp_path: Path,
                                                                        fixtures_dir: Path) -> None:
    from app.loom import build_loom

    links = {"models/checkpoints/tiny-sd15.safetensors": fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors",
             f"models/controlnet/{V11}": fixtures_dir / "adapters" / V11,
             f"models/controlnet/{V10}": fixtures_dir / "adapters" / V10,
             "input/hint_edges_128x64.png": fixtures_dir / "adapters" / "hint_edges_128x64.png",
             "input/hint_depth_128x64.png": fixtures_dir / "adapters" / "hint_depth_128x64.png"}
    for rel, src in links.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, tmp_path / rel)
    loom = build_loom(Config(base_directory=tmp_path, cpu=True, custom_node_dirs=(tmp_path / "none",)))
    try:
        c = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False))
        entries = []
        for _ in range(2):
            resp = await c.post("/prompt", json={"prompt": _graph()})
            assert resp.status == 200, await resp.text()
            entries.append(await wait_history(c, (await resp.json())["prompt_id"], timeout=240))
    finally:
        loom.close()
    # the second, fully cached run sampled nothing: it reports nothing (the first run's entry has the record)
    assert entries[1]["status"]["status_str"] == "success" and "loom" not in entries[1]
    schedule = _normal_schedule(STEPS)
    entry = entries[0]
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert set(entry["outputs"]) == {"7"}  # ComfyUI clients see only the SaveImage output
    reports = entry["loom"]["reports"]
    records = {r["file"]: r for r in reports["5"]["adapters"]}
    assert set(records) == {V11, V10}
    full, window = records[V11], records[V10]
    assert (full["strength"], full["start_percent"], full["end_percent"]) == (0.7, 0.0, 1.0)
    assert (window["strength"], window["start_percent"], window["end_percent"]) == (0.5, 0.2, 0.6)
    assert full["kind"] == window["kind"] == "controlnet" and full["family"] == "sd15"
    assert window["previous"] == V11 and full["previous"] is None
    assert full["steps"] == list(range(STEPS)) and full["model_calls"] == STEPS
    lo, hi = _percent_to_sigma(0.6), _percent_to_sigma(0.2)
    expected = [i for i, s in enumerate(schedule[:-1]) if lo <= s <= hi]
    assert 0 < len(expected) < STEPS
    assert window["steps"] == expected, (window, schedule)
    assert np.allclose(window["sigmas"], [schedule[i] for i in expected], rtol=1e-6)
    assert math.isclose(window["sigma_end"], lo, rel_tol=1e-5)
    chain = reports["23"]["controls"][0]["chain"]
    assert [r["file"] for r in chain] == [V10, V11]
