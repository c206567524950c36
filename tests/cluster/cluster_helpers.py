"""Helpers for the cluster tests: a tiny txt2img prompt and a Loom on the Ray backend."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.cluster.backend import RayBackend
from app.config import Config
from app.engine_factory import Engine
from app.hub import Hub
from app.loom import Loom
from app.queue_store import QueueStore

CKPT = "tiny-sd15.safetensors"


def txt2img(seed: int, steps: int = 2, size: int = 64, batch: int = 1, prefix: str = "cl") -> dict[str, Any]:
    """CheckpointLoader -> two CLIPTextEncode -> EmptyLatent -> KSampler -> VAEDecode -> SaveImage."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 7.5, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def ray_loom(base: Path, run_dir: Path, registry: Any, *, workers: int = 2, retries: int = 2,
             **changes: Any) -> Loom:
    """A Loom whose backend is a RayBackend with `workers` CPU actors (Ray already initialised)."""
    from executor import InterruptFlag, validate_prompt

    cfg = Config(base_directory=base, cpu=True, output_directory=run_dir / "output",
                 user_directory=run_dir / "user", temp_directory=run_dir,
                 custom_node_dirs=(base / "custom_nodes",), backend="ray", ray_workers=workers).with_changes(**changes)
    hub = Hub()
    store = QueueStore(cfg.user_dir / "loom.db", requeue_running=True)
    backend = RayBackend(store, hub, cfg, workers=workers, retries=retries, actor_options={"num_cpus": 1})
    return Loom(config=cfg, engine=Engine(registry, None), validate_fn=validate_prompt,
                interrupt_flag=InterruptFlag(), hub=hub, store=store, worker=backend)
