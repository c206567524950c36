"""Block replacement (``transformer_options["patches_replace"]["dit"]``) in the MMDiT and Flux networks and
SkipLayerGuidanceSD3 / SkipLayerGuidanceDiT: the guided x0 equals CFG + (cond - cond with the blocks removed) x
scale, the skipped pass computed here on a network whose blocks were swapped for identities."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from families2_support import FAM2, GOLDEN2
from torch import nn

SD3 = "comfy__sd35m__txt2img__euler__sgm_uniform__shift3"
FLUX = "comfy__flux_dev__txt2img__euler__simple__128x128"


class _SkipPair(nn.Module):
    """An MMDiT joint block / Flux double block that changes nothing."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, *rest: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return a, b


class _SkipSingle(nn.Module):
    """A Flux single block that changes nothing."""

    def forward(self, x: torch.Tensor, *rest: Any) -> torch.Tensor:
        return x


@contextmanager
def _removed(targets: list[tuple[nn.ModuleList, list[int], type[nn.Module]]]) -> Iterator[None]:
    saved = [(blocks, i, blocks[i]) for blocks, indices, _ in targets for i in indices]
    for blocks, indices, cls in targets:
        for i in indices:
            blocks[i] = cls()
    try:
        yield
    finally:
        for blocks, i, b in saved:
            blocks[i] = b


def _load(case: str) -> tuple[Any, Any]:
    load = lambda s: torch.from_numpy(np.load(GOLDEN2 / f"{case}.{s}.npy"))  # noqa: E731
    return ([[load("cond"), {"pooled_output": load("cond_pooled"), "guidance": 3.5}]],
            [[load("uncond"), {"pooled_output": load("uncond_pooled")}]])


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    from engine.device import DevicePolicy
    from engine.loading import load_checkpoint, load_unet
    from engine.model_management import ModelManager

    torch.set_num_threads(1)
    manager = ModelManager(DevicePolicy.cpu())
    return {"sd3": load_checkpoint(FAM2 / "tiny-sd35m.safetensors", manager)[0],
            "flux": load_unet(FAM2 / "tiny-flux1-dev.safetensors", manager)}


def _one_step(model: Any, case: str, cfg: float) -> torch.Tensor:
    """One Euler step to sigma 0: the guided x0 at the first sigma."""
    from engine.sampling.ksampler import sample

    pos, neg = _load(case)
    noise = torch.from_numpy(np.load(GOLDEN2 / f"{case}.noise.npy"))
    return sample(model, noise, 1, cfg, "euler", "simple", pos, neg, torch.zeros_like(noise), seed=0)


def _one_step_conds(model: Any, pos: Any, neg: Any, cfg: float = 1.0, case: str = FLUX) -> torch.Tensor:
    from engine.sampling.ksampler import sample

    noise = torch.from_numpy(np.load(GOLDEN2 / f"{case}.noise.npy"))
    return sample(model, noise, 1, cfg, "euler", "simple", pos, neg, torch.zeros_like(noise), seed=0)


def test_block_replacement_calling_the_original_is_exact(models: dict[str, Any]) -> None:
    seen: list[tuple[str, int]] = []

    def passthrough(kind: str, i: int) -> Any:
        def patch(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
            seen.append((kind, i))
            return dict(extra["original_block"](args))
        return patch

    for key, case, tables in (("sd3", SD3, [("double_block", 0), ("double_block", 1)]),
                              ("flux", FLUX, [("double_block", 1), ("single_block", 2)])):
        plain = _one_step(models[key], case, 2.0)
        patched = models[key].clone()
        for kind, i in tables:
            patched.set_model_patch_replace(passthrough(kind, i), "dit", kind, i)
        seen.clear()
        assert torch.equal(_one_step(patched, case, 2.0), plain)
        assert sorted(set(seen)) == sorted(tables)  # every patch ran


@pytest.mark.parametrize("key,case,node", [("sd3", SD3, "SkipLayerGuidanceSD3"), ("flux", FLUX, "SkipLayerGuidanceDiT")])
def test_skip_layer_guidance_matches_removed_blocks(models: dict[str, Any], key: str, case: str, node: str) -> None:
    from nodes.flow_families import SkipLayerGuidanceDiT, SkipLayerGuidanceSD3

    model, scale, cfg = models[key], 2.5, 3.0
    if node == "SkipLayerGuidanceSD3":
        (slg,) = SkipLayerGuidanceSD3().skip_guidance_sd3(model, "1", scale, 0.0, 1.0)
        removed = [(model.diffusion_model.joint_blocks, [1], _SkipPair)]
    else:
        (slg,) = SkipLayerGuidanceDiT().skip_guidance(model, scale, 0.0, 1.0, double_layers="1", single_layers="0, 3")
        removed = [(model.diffusion_model.double_blocks, [1], _SkipPair),
                   (model.diffusion_model.single_blocks, [0, 3], _SkipSingle)]
    plain = _one_step(model, case, cfg)
    cond = _one_step(model, case, 1.0)  # cfg 1: the positive x0 alone
    with _removed(removed):
        skipped = _one_step(model, case, 1.0)
    guided = _one_step(slg, case, cfg)
    expected = plain + (cond - skipped) * scale
    assert not torch.allclose(skipped, cond, atol=1e-3)  # the removed blocks matter
    err = float((guided - expected).abs().max() / expected.abs().max())
    print(node, "rel err vs removed-block reference", err)
    assert err < 1e-5
    assert "sampler_post_cfg_function" not in model.model_options  # the input handle is untouched


def test_skip_layer_guidance_simple_skips_blocks_in_the_negative_pass(models: dict[str, Any]) -> None:
    """SkipLayerGuidanceDiTSimple: CFG between the positive x0 and the negative x0 of the network without the
    blocks; outside its window plain CFG."""
    from nodes.flow_families import SkipLayerGuidanceDiTSimple

    model, cfg = models["flux"], 3.0
    net = model.diffusion_model
    (simple,) = SkipLayerGuidanceDiTSimple().skip_guidance(model, 0.0, 1.0, double_layers="0", single_layers="1, 2")
    pos, neg = _load(FLUX)
    cond = _one_step(model, FLUX, 1.0)
    with _removed([(net.double_blocks, [0], _SkipPair), (net.single_blocks, [1, 2], _SkipSingle)]):
        uncond_skipped = _one_step_conds(model, neg, neg)  # cfg 1 on the negative conditioning
    expected = uncond_skipped + (cond - uncond_skipped) * cfg
    got = _one_step(simple, FLUX, cfg)
    err = float((got - expected).abs().max() / expected.abs().max())
    print("SkipLayerGuidanceDiTSimple rel err vs removed-block reference", err)
    assert err < 1e-5 and not torch.allclose(got, _one_step(model, FLUX, cfg), atol=1e-4)
    (late,) = SkipLayerGuidanceDiTSimple().skip_guidance(model, 0.5, 1.0, double_layers="0")
    assert torch.equal(_one_step(late, FLUX, cfg), _one_step(model, FLUX, cfg))


def test_skip_layer_guidance_outside_window_and_scale_zero(models: dict[str, Any]) -> None:
    from nodes.flow_families import SkipLayerGuidanceSD3

    model = models["sd3"]
    plain = _one_step(model, SD3, 3.0)
    (late,) = SkipLayerGuidanceSD3().skip_guidance_sd3(model, "0", 3.0, 0.5, 1.0)  # window below the first sigma
    (zero,) = SkipLayerGuidanceSD3().skip_guidance_sd3(model, "0", 0.0, 0.0, 1.0)
    (none,) = SkipLayerGuidanceSD3().skip_guidance_sd3(model, "", 3.0, 0.0, 1.0)
    assert torch.equal(_one_step(late, SD3, 3.0), plain) and torch.equal(_one_step(zero, SD3, 3.0), plain)
    assert none is model


def test_skip_layer_guidance_sd3_through_nodes(run2: Any) -> None:
    """The golden SD3 graph with SkipLayerGuidanceSD3 between the loader and KSampler: a different latent at
    scale 3, the golden one at scale 0."""
    case = json.loads((GOLDEN2 / f"{SD3}.json").read_text())
    graph = copy.deepcopy(case["graph"])
    sampler = next(k for k, n in graph.items() if n["class_type"] == "KSampler")
    model_link = graph[sampler]["inputs"]["model"]
    graph["90"] = {"class_type": "SkipLayerGuidanceSD3", "inputs": {"model": model_link, "layers": "1", "scale": 3.0,
                                                                     "start_percent": 0.01, "end_percent": 0.5}}
    graph[sampler]["inputs"]["model"] = ["90", 0]
    golden = np.load(GOLDEN2 / f"{SD3}.latent.npy")
    out = run2(graph, "slg")
    latent = out.values[sampler][0][0]["samples"].numpy()
    assert np.abs(latent - golden).max() > 1e-3
    graph["90"]["inputs"]["scale"] = 0.0
    out = run2(graph, "slg0")
    assert np.abs(out.values[sampler][0][0]["samples"].numpy() - golden).max() / np.abs(golden).max() < 1e-5


@pytest.fixture
def comfy_modules(tmp_path: Any) -> Iterator[Any]:
    """ComfyUI's module names as packs see them (app.compat), removed again afterwards."""
    from app.compat._environment import CompatEnvironment, LoomHandles
    from executor.registry import NodeRegistry

    env = CompatEnvironment(LoomHandles(registry=NodeRegistry(), base_dir=tmp_path)).install()
    try:
        import comfy.model_patcher
        import comfy.samplers

        yield comfy
    finally:
        env.uninstall()


def test_pack_style_skip_layer_guidance_through_the_comfy_modules(models: dict[str, Any], comfy_modules: Any
                                                                   ) -> None:
    """A pack's skip-layer guidance written against ComfyUI's modules (set_model_options_patch_replace on the
    hook's model_options, comfy.samplers.calc_cond_batch) gives the built-in node's result bit for bit."""
    from nodes.flow_families import SkipLayerGuidanceSD3

    comfy = comfy_modules
    model, scale = models["flux"], 2.0
    ms = model.model_sampling
    sigma_start, sigma_end = ms.percent_to_sigma(0.0), ms.percent_to_sigma(1.0)

    def skip(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return args

    def post_cfg(args: dict[str, Any]) -> torch.Tensor:
        options = args["model_options"].copy()
        for layer in (0, 1):
            options = comfy.model_patcher.set_model_options_patch_replace(options, skip, "dit", "double_block", layer)
        result = args["denoised"]
        if sigma_end <= float(args["sigma"][0]) <= sigma_start:
            (slg,) = comfy.samplers.calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"],
                                                    options)
            result = result + (args["cond_denoised"] - slg) * scale
        return result

    pack = model.clone()
    pack.set_model_sampler_post_cfg_function(post_cfg)
    (builtin,) = SkipLayerGuidanceSD3().skip_guidance_sd3(model, "0, 1", scale, 0.0, 1.0)
    assert torch.equal(_one_step(pack, FLUX, 3.0), _one_step(builtin, FLUX, 3.0))
    assert not torch.equal(_one_step(pack, FLUX, 3.0), _one_step(model, FLUX, 3.0))
