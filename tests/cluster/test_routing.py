"""Routing without Ray: model-aware, cache-aware, least loaded, busy workers skipped."""
from __future__ import annotations

import json
from typing import Any

from cluster_helpers import txt2img

from app.cluster.routing import WorkerView, choose_worker, model_files, node_keys


def test_model_files_and_node_keys_follow_the_graph() -> None:
    p = txt2img(1)
    assert model_files(p) == {"tiny-sd15.safetensors"}
    reseeded = json.loads(json.dumps(p))
    reseeded["3"]["inputs"]["seed"] = 2
    shared = node_keys(p) & node_keys(reseeded)
    assert len(shared) == 4  # loader, latent, two text encoders; sampler, decode and save differ
    retext = json.loads(json.dumps(p))
    retext["6"]["inputs"]["text"] = "a dog"
    assert len(node_keys(p) & node_keys(retext)) == 3  # the changed encoder and everything below it differ


def test_busy_workers_are_never_chosen() -> None:
    assert choose_worker(txt2img(1), [WorkerView("a", idle=False), WorkerView("b", idle=False)]) is None
    assert choose_worker(txt2img(1), [WorkerView("a", idle=False), WorkerView("b", idle=True)]) == "b"


def test_model_aware_then_least_loaded() -> None:
    p = txt2img(1)
    has_model = WorkerView("a", idle=True, models=frozenset({"tiny-sd15.safetensors"}), done=9)
    empty = WorkerView("b", idle=True, done=0)
    assert choose_worker(p, [empty, has_model]) == "a"
    other = WorkerView("c", idle=True, models=frozenset({"big.safetensors"}), done=0)
    assert choose_worker(p, [other, empty]) == "b"  # nothing to reuse: the one holding the least
    assert choose_worker(p, [WorkerView("x", True, done=5), WorkerView("y", True, done=1)]) == "y"


def test_seed_only_rerun_prefers_the_cache() -> None:
    p: dict[str, Any] = txt2img(1)
    m = frozenset({"tiny-sd15.safetensors"})
    other_text = json.loads(json.dumps(p))
    other_text["6"]["inputs"]["text"] = "something else"
    warm = WorkerView("warm", True, models=m, cache_keys=node_keys(p), done=50)
    cold = WorkerView("cold", True, models=m, cache_keys=node_keys(other_text), done=0)
    rerun = json.loads(json.dumps(p))
    rerun["3"]["inputs"]["seed"] = 77
    assert choose_worker(rerun, [cold, warm]) == "warm"
    assert choose_worker(rerun, [cold, WorkerView("warm", False, models=m, cache_keys=node_keys(p))]) == "cold"


def test_node_keys_survive_cycles_and_dangling_links() -> None:
    g = {"1": {"class_type": "A", "inputs": {"x": ["2", 0]}}, "2": {"class_type": "B", "inputs": {"y": ["1", 0]}},
         "3": {"class_type": "C", "inputs": {"z": ["404", 0]}}}
    assert len(node_keys(g)) == 3
