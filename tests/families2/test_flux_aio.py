"""The Flux.1 all-in-one checkpoints (tiny-flux1-dev-aio / -schnell-aio, written at test time as the shared make_derived.py does:
its metadata names no text-encoder heads) through CheckpointLoaderSimple: the same content as the shared file, and
the golden Flux dev / schnell graphs give the split loaders' latent and image bit for bit."""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import GOLDEN2, rel_err

DEV = "comfy__flux_dev__txt2img__euler__simple__128x128"
SCHNELL = "comfy__flux_schnell__txt2img__euler__simple__4steps"
SHARED_CONTENT_SHA256 = "991aef7316a231d78ea0bf0fcf59d984b3252b7dd1bb1a7b25186539af486b24"


def _content_hash(sd: dict[str, torch.Tensor]) -> str:
    """The shared README's content hash: sha256 over sorted ``name|dtype|shape|`` and raw tensor bytes."""
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(f"{k}|{str(v.dtype).replace('torch.', '')}|{list(v.shape)}|".encode())
        h.update(v.contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def test_derived_file_is_the_shared_one(models2_base: Any) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(models2_base / "models" / "checkpoints" / "tiny-flux1-dev-aio.safetensors"))
    assert _content_hash(sd) == SHARED_CONTENT_SHA256


@pytest.mark.parametrize("name,variant", [(DEV, "dev"), (SCHNELL, "schnell")])
def test_flux_aio_equals_split_loaders(run2: Any, name: str, variant: str) -> None:
    case = json.loads((GOLDEN2 / f"{name}.json").read_text())
    split = run2(case["graph"], f"split-{variant}")
    graph = copy.deepcopy(case["graph"])
    for node in ("41", "42"):
        del graph[node]
    graph["40"] = {"class_type": "CheckpointLoaderSimple",
                   "inputs": {"ckpt_name": f"tiny-flux1-{variant}-aio.safetensors"}}
    for node in graph.values():
        for input_name, value in node["inputs"].items():
            if value == ["41", 0]:
                node["inputs"][input_name] = ["40", 1]
            elif value == ["42", 0]:
                node["inputs"][input_name] = ["40", 2]
    aio = run2(graph, f"aio-{variant}")
    assert split.status == "success" and aio.status == "success", (split.error, aio.error)
    lat, img = str(case["latent_node"]), str(case["image_node"])
    a_lat, s_lat = aio.values[lat][0][0]["samples"], split.values[lat][0][0]["samples"]
    assert torch.equal(a_lat, s_lat)
    assert torch.equal(aio.values[img][0][0], split.values[img][0][0])
    err = rel_err(a_lat.numpy(), np.load(GOLDEN2 / f"{name}.latent.npy"))
    print(f"flux {variant} aio latent_rel vs golden", err)
    assert err < 1e-5
    clip = aio.values["40"][1][0]
    assert {m.config.num_attention_heads for k, m in clip.encoders.items() if k == "clip_l"} == {2}
