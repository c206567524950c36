"""Executor overhead benchmark: validation and execution time per node, first run and fully cached.

Run: ``.venv/bin/python bench/executor.py`` (prints a table; targets <=50 us/node first run,
<=10 us/node cached re-run). Nodes are trivial pure-Python classes, so the numbers are the engine's
own overhead (scheduling, signatures, events), not model work.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor import CollectingSink, NodeRegistry, PromptExecutor, validate_prompt  # noqa: E402


def _node(name: str, inputs: dict[str, Any], outputs: tuple[str, ...], output_node: bool = False) -> type:
    def run(self: Any, **kwargs: Any) -> Any:
        if output_node:
            return {"ui": {"images": [{"filename": "x.png", "subfolder": "", "type": "output"}]}}
        return tuple(range(len(outputs)))

    return type(name, (), {"INPUT_TYPES": classmethod(lambda cls: {"required": inputs}), "RETURN_TYPES": outputs,
                           "FUNCTION": "run", "OUTPUT_NODE": output_node, "run": run})


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.register("Start", _node("Start", {"value": ("INT", {"default": 0, "min": 0, "max": 10})}, ("INT",)))
    reg.register("Step", _node("Step", {"x": ("INT",), "k": ("INT", {"default": 1})}, ("INT",)))
    reg.register("Sink", _node("Sink", {"x": ("*",)}, (), output_node=True))
    reg.register("Ckpt", _node("Ckpt", {"ckpt_name": (["a.safetensors", "b.safetensors"],)}, ("MODEL", "CLIP", "VAE")))
    reg.register("Encode", _node("Encode", {"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)},
                                 ("CONDITIONING",)))
    reg.register("Empty", _node("Empty", {"width": ("INT", {"default": 512, "min": 16, "max": 16384}),
                                          "height": ("INT", {"default": 512, "min": 16, "max": 16384}),
                                          "batch_size": ("INT", {"default": 1, "min": 1, "max": 64})}, ("LATENT",)))
    reg.register("Sample", _node("Sample", {
        "model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1}),
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000}), "cfg": ("FLOAT", {"default": 8.0}),
        "sampler_name": (["euler", "dpmpp_2m"],), "scheduler": (["normal", "karras"],),
        "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
        "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0})}, ("LATENT",)))
    reg.register("Decode", _node("Decode", {"samples": ("LATENT",), "vae": ("VAE",)}, ("IMAGE",)))
    reg.register("Save", _node("Save", {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "Loom"})}, (),
                               output_node=True))
    return reg


def chain(n: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": {"class_type": "Start", "inputs": {"value": 1}}}
    for i in range(1, n - 1):
        prompt[str(i)] = {"class_type": "Step", "inputs": {"x": [str(i - 1), 0], "k": i}}
    prompt[str(n - 1)] = {"class_type": "Sink", "inputs": {"x": [str(n - 2), 0]}}
    return prompt


def txt2img() -> dict[str, Any]:
    return {
        "3": {"class_type": "Sample", "inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8.0,
                                                 "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                                                 "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                 "latent_image": ["5", 0]}},
        "4": {"class_type": "Ckpt", "inputs": {"ckpt_name": "a.safetensors"}},
        "5": {"class_type": "Empty", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "Encode", "inputs": {"text": "a photo of a cat", "clip": ["4", 1]}},
        "7": {"class_type": "Encode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "Decode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "Save", "inputs": {"filename_prefix": "Loom", "images": ["8", 0]}},
    }


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Return the best (wall seconds, CPU seconds) over ``repeat`` runs (least disturbed by other load)."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return min(walls), min(cpus)


Row = tuple[str, int, list[tuple[float, float]]]


def measure(name: str, reg: NodeRegistry, prompt: dict[str, Any], repeat: int) -> Row:
    n = len(prompt)
    valid = validate_prompt(reg, prompt)
    t_valid = best(lambda: validate_prompt(reg, prompt), repeat)

    def first() -> None:
        outcome = PromptExecutor(reg).execute(valid.prompt, "bench", {}, valid.outputs, sink=CollectingSink())
        assert outcome.status == "success", outcome.error

    t_first = best(first, repeat)
    executor = PromptExecutor(reg)
    executor.execute(valid.prompt, "warm", {}, valid.outputs, sink=CollectingSink())

    def uncached() -> None:
        executor.cache.clear()
        outcome = executor.execute(valid.prompt, "bench", {}, valid.outputs, sink=CollectingSink())
        assert outcome.status == "success" and len(outcome.executed) == n, outcome.executed

    t_uncached = best(uncached, repeat)

    def cached() -> None:
        outcome = executor.execute(valid.prompt, "bench", {}, valid.outputs, sink=CollectingSink())
        assert outcome.status == "success" and outcome.executed == [] and outcome.cached == valid.outputs

    t_cached = best(cached, repeat)

    def per_node(t: tuple[float, float]) -> tuple[float, float]:
        return t[0] / n * 1e6, t[1] / n * 1e6

    return name, n, [per_node(t) for t in (t_valid, t_first, t_uncached, t_cached)]


def main() -> None:
    reg = registry()
    rows = [measure("chain (1,000 nodes)", reg, chain(1000), 7),
            measure("txt2img-shaped (7 nodes)", reg, txt2img(), 300)]
    print("us per node, best of N runs, as wall-clock / CPU time of this process; 'new exec' includes reading")
    print("every class's INPUT_TYPES and creating node instances, 'warm' is a new prompt on a running server")
    print(f"{'graph':<26} {'nodes':>6} {'validate':>16} {'first (new exec)':>16} {'first (warm)':>16} "
          f"{'cached re-run':>16}")
    for name, n, times in rows:
        cells = [f"{w:7.1f} / {cpu:5.1f}" for w, cpu in times]
        print(f"{name:<26} {n:>6} " + " ".join(f"{cell:>16}" for cell in cells))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"targets: first run <= 50 us/node, cached re-run <= 10 us/node (load average {load:.1f}, "
          f"{os.cpu_count()} CPUs: wall-clock grows with other load, CPU time much less)")


if __name__ == "__main__":
    main()
