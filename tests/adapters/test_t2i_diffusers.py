"""diffusers-format T2I-Adapter files (``adapter.*`` names) load as the TencentARC files they were renamed from:
the tiny full (depth) and light (color) adapters, renamed here to diffusers' FullAdapter / LightAdapter names, give
the same weights, features and sampled latent."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from adapter_helpers import ADA, GOLDEN, link_models, run_graph
from safetensors import safe_open
from safetensors.torch import save_file

from engine.adapters.control_load import load_control
from engine.adapters.detect import control_family
from engine.device import DevicePolicy
from engine.model_management import ModelManager
from engine.safetensors_header import read_safetensors_header

FULL, LIGHT = "tiny-t2iadapter_depth_sd15v2.safetensors", "tiny-t2iadapter_color_sd14v1.safetensors"
CASE = "t2i_depth__adv_s1.0__euler__normal"


def _read(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def to_diffusers_full(sd: dict[str, torch.Tensor], per_block: int = 2) -> dict[str, torch.Tensor]:
    """TencentARC Adapter -> diffusers FullAdapter names (resnet k = block k // n, resnet k % n)."""
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "body":
            block, resnet = divmod(int(parts[1]), per_block)
            if parts[2] == "in_conv":
                assert resnet == 0, key
                key = ".".join(["body", str(block), *parts[2:]])
            else:
                key = ".".join(["body", str(block), "resnets", str(resnet), *parts[2:]])
        out["adapter." + key] = value
    return out


def to_diffusers_light(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapter_light -> diffusers LightAdapter names (``body.i.body.j`` -> ``body.i.resnets.j``)."""
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "body":
            parts[2] = "resnets"
        out["adapter." + ".".join(parts)] = value
    return out


@pytest.fixture(scope="module")
def t2i_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = link_models(tmp_path_factory.mktemp("t2idiffusers"))
    folder = base / "models" / "t2i_adapter"
    save_file(to_diffusers_full(_read(ADA / FULL)), str(folder / "diffusers-depth.safetensors"))
    save_file(to_diffusers_light(_read(ADA / LIGHT)), str(folder / "diffusers-color.safetensors"))
    return base


@pytest.fixture(scope="module")
def t2i_rt(t2i_base: Path) -> Iterator[Any]:
    from app.runner import build_runtime

    torch.set_num_threads(1)
    rt = build_runtime(t2i_base, cpu=True)
    yield rt
    rt.close()


@pytest.mark.parametrize(("original", "renamed"), [(FULL, "diffusers-depth.safetensors"),
                                                   (LIGHT, "diffusers-color.safetensors")])
def test_diffusers_names_load_to_the_same_adapter(t2i_base: Path, original: str, renamed: str) -> None:
    manager = ModelManager(DevicePolicy.cpu())
    path = t2i_base / "models" / "t2i_adapter" / renamed
    assert all(k.startswith("adapter.") for k in read_safetensors_header(path).shapes())
    header_spec = control_family(read_safetensors_header(path).shapes(), renamed)  # what validation sees
    ours, theirs = load_control(path, manager), load_control(ADA / original, manager)
    assert header_spec.layout == ours.spec.layout == theirs.spec.layout
    assert ours.config == theirs.config
    a, b = ours.module.state_dict(), theirs.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hint = torch.rand(1, ours.config.hint_channels, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fa, fb = ours.module(hint), theirs.module(hint)
    assert all(torch.equal(x, y) for x, y in zip(fa["input"], fb["input"], strict=True) if x is not None)


def test_diffusers_depth_adapter_gives_the_golden_latent_exactly(t2i_rt: Any) -> None:
    graph = copy.deepcopy(json.loads((GOLDEN / f"comfy__{CASE}.json").read_text())["graph"])
    loaders = [n for n, node in graph.items() if node["class_type"] == "ControlNetLoader"]
    assert len(loaders) == 1
    original = run_graph(t2i_rt, graph, "orig")
    graph[loaders[0]]["inputs"]["control_net_name"] = "diffusers-depth.safetensors"
    renamed = run_graph(t2i_rt, graph, "diffusers")
    assert original.status == renamed.status == "success", renamed.error
    a, b = (np.asarray(o.values["5"][0][0]["samples"].numpy()) for o in (original, renamed))
    assert np.array_equal(a, b)
    golden = np.load(GOLDEN / f"comfy__{CASE}.latent.npy")
    assert np.abs(b - golden).max() / np.abs(golden).max() < 1e-4
