"""Run the demo checkpoint through Loom's real nodes and executor with the shipped example workflows."""
from __future__ import annotations

import copy
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.demo.config import TrainConfig
from engine.demo.score import Reading, read_image
from engine.demo.world import Scene
from engine.device import DevicePolicy
from engine.lazy_models import LazyModelManager
from engine.model_management import ModelManager
from engine.paths import ModelPaths
from executor import PromptExecutor, validate_prompt
from nodes import register_builtin_nodes
from nodes.services import NodeServices

REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "engine" / "demo" / "loom-demo-shapes.safetensors"
WORKFLOWS = REPO / "workflows"
CKPT_NAME = "loom-demo-shapes.safetensors"


def workflow(name: str) -> dict[str, Any]:
    """One of the shipped API-format workflows (txt2img, img2img, inpaint), with the demo checkpoint."""
    graph: dict[str, Any] = json.loads((WORKFLOWS / f"{name}.json").read_text())
    for node in graph.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = CKPT_NAME
    return graph


def _node(graph: dict[str, Any], class_type: str, title: str | None = None) -> dict[str, Any]:
    for node in graph.values():
        if node["class_type"] == class_type and (title is None or node.get("_meta", {}).get("title") == title):
            return node  # type: ignore[no-any-return]
    raise KeyError(f"workflow has no {class_type} node{f' titled {title!r}' if title else ''}")


NATIVE = TrainConfig().unet_image_size
"""The demo model's native image size (what its UNet was last trained at)."""


def with_prompt(graph: dict[str, Any], text: str, seed: int, **sampler: Any) -> dict[str, Any]:
    """A copy of `graph` with the positive prompt, seed, any KSampler inputs, and the native size."""
    out = copy.deepcopy(graph)
    for node in out.values():
        if node["class_type"] == "EmptyLatentImage":
            node["inputs"]["width"] = node["inputs"]["height"] = NATIVE
    _node(out, "CLIPTextEncode", "Positive prompt")["inputs"]["text"] = text
    ks = _node(out, "KSampler")["inputs"]
    ks["seed"] = seed
    ks.update(sampler)
    return out


class DemoGraphRunner:
    """A Loom base folder holding the demo checkpoint, a registry of built-in nodes and an executor."""

    def __init__(self, base: Path, checkpoint: Path = DEMO_CHECKPOINT) -> None:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"demo checkpoint missing: {checkpoint}; train it with "
                                    "`python -m engine.demo.train`")
        self.paths = ModelPaths(base)
        self.paths.ensure_dirs()
        target = Path(self.paths.get_folder_paths("checkpoints")[0]) / CKPT_NAME
        if not target.exists():
            target.symlink_to(checkpoint)
        from executor import NodeRegistry

        self.registry = NodeRegistry()
        self.services = NodeServices(paths=self.paths, models=LazyModelManager(manager=ModelManager(DevicePolicy.cpu())))
        register_builtin_nodes(self.registry, self.services)
        self.executor = PromptExecutor(self.registry)
        self.seconds: list[float] = []

    def add_checkpoint(self, name: str, path: Path) -> str:
        """Make `path` available to CheckpointLoaderSimple as `name` (a link in models/checkpoints)."""
        target = Path(self.paths.get_folder_paths("checkpoints")[0]) / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(path.resolve())
        return name

    @property
    def input_dir(self) -> Path:
        return Path(self.paths.get_directory_by_type("input") or "")

    @property
    def output_dir(self) -> Path:
        return Path(self.paths.get_directory_by_type("output") or "")

    def add_input(self, name: str, image: np.ndarray | Image.Image) -> str:
        """Put an image into input/ for LoadImage / LoadImageMask; returns its name."""
        pil = image if isinstance(image, Image.Image) else Image.fromarray(
            np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8))
        pil.save(self.input_dir / name)
        return name

    def run(self, graph: dict[str, Any]) -> np.ndarray:
        """Validate and execute `graph`; the first image its SaveImage node wrote, [H, W, 3] float 0..1."""
        valid = validate_prompt(self.registry, graph)
        started = time.perf_counter()
        outcome = self.executor.execute(valid.prompt, uuid.uuid4().hex, {}, valid.outputs)
        self.seconds.append(time.perf_counter() - started)
        if outcome.status != "success":
            raise RuntimeError(f"demo graph failed: {outcome.error}")
        for ui in outcome.outputs.values():
            for image in ui.get("images", []):
                path = self.output_dir / image.get("subfolder", "") / image["filename"]
                return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        raise RuntimeError(f"demo graph wrote no image; outputs: {outcome.outputs}")

    def txt2img(self, text: str, seed: int, **sampler: Any) -> np.ndarray:
        """The shipped txt2img workflow with `text` as the positive prompt."""
        return self.run(with_prompt(workflow("txt2img"), text, seed, **sampler))

    def score(self, scenes: list[Scene], seeds: tuple[int, ...]) -> list[tuple[Scene, Reading, int]]:
        """Read every (scene, seed) image the txt2img workflow makes."""
        return [(s, read_image(self.txt2img(s.caption(), seed)), seed) for s in scenes for seed in seeds]

    def close(self) -> None:
        self.services.model_manager().unload_all()


def copy_checkpoint(dest: Path) -> Path:
    """A private copy of the demo checkpoint (for tests that must not share files)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEMO_CHECKPOINT, dest)
    return dest
