"""Which worker runs a prompt: model-aware and cache-aware routing over plain records (no Ray here).

A prompt goes to an idle worker whose cache holds most of its nodes (a seed-only re-run shares every
node above the sampler), else to one that already has its checkpoint loaded, else to the least loaded.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["WorkerView", "choose_worker", "model_files", "node_keys", "MODEL_INPUTS"]

# Inputs that name a model file a worker loads into memory (ComfyUI loader nodes' input names).
MODEL_INPUTS = frozenset({"ckpt_name", "unet_name", "vae_name", "lora_name", "clip_name", "clip_name1",
                          "clip_name2", "clip_name3", "control_net_name", "model_name", "style_model_name"})


@dataclass(frozen=True)
class WorkerView:
    """What routing knows of one worker."""

    name: str
    idle: bool
    models: frozenset[str] = frozenset()
    cache_keys: frozenset[str] = frozenset()
    done: int = 0


def model_files(prompt: dict[str, Any]) -> frozenset[str]:
    """The model file names a prompt's loader nodes ask for."""
    found: set[str] = set()
    for node in prompt.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        for key, value in inputs.items():
            if key in MODEL_INPUTS and isinstance(value, str):
                found.add(value)
    return frozenset(found)


def node_keys(prompt: dict[str, Any]) -> frozenset[str]:
    """One key per node from its class, literal inputs and ancestors' keys (the output cache's signature).

    Two prompts that differ only in a seed share the keys of every node that does not depend on the seed.
    """
    memo: dict[str, str] = {}

    def key(node_id: str, trail: frozenset[str]) -> str:
        if node_id in memo:
            return memo[node_id]
        node = prompt.get(node_id)
        if not isinstance(node, dict) or node_id in trail:
            return f"missing:{node_id}"
        parts: list[Any] = [node.get("class_type")]
        inputs = node.get("inputs", {})
        for name in sorted(inputs if isinstance(inputs, dict) else {}):
            value = inputs[name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                parts.append([name, key(value[0], trail | {node_id}), value[1]])
            else:
                parts.append([name, value])
        digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        memo[node_id] = digest
        return digest

    return frozenset(key(str(nid), frozenset()) for nid in prompt)


def choose_worker(prompt: dict[str, Any], workers: Sequence[WorkerView]) -> str | None:
    """The idle worker to run `prompt` on, or None when every worker is busy."""
    idle = [w for w in workers if w.idle]
    if not idle:
        return None
    keys = node_keys(prompt)
    models = model_files(prompt)

    def score(w: WorkerView) -> tuple[int, int, int, int]:
        return (len(keys & w.cache_keys), len(models & w.models), -len(w.models), -w.done)

    return max(idle, key=score).name
