"""ControlNet / T2I-Adapter with img2img and noise-mask inpainting, the light T2I-Adapter, and an SDXL chain."""
from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import torch
from adapter_helpers import GOLDEN


def _graph(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((GOLDEN / f"comfy__{name}.json").read_text())["graph"])


def _img2img(graph: dict[str, Any], mask: bool) -> dict[str, Any]:
    graph["60"] = {"class_type": "LoadImage", "inputs": {"image": "init_128x64.png"}}
    graph["61"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["60", 0], "vae": ["1", 2]}}
    latent: list[Any] = ["61", 0]
    if mask:
        graph["62"] = {"class_type": "LoadImageMask", "inputs": {"image": "mask_128x64.png", "channel": "red"}}
        graph["63"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["61", 0], "mask": ["62", 0]}}
        latent = ["63", 0]
    graph["5"]["inputs"].update(latent_image=latent, denoise=0.6)
    return graph


def _without_control(graph: dict[str, Any]) -> dict[str, Any]:
    plain = copy.deepcopy(graph)
    plain["5"]["inputs"]["positive"], plain["5"]["inputs"]["negative"] = ["2", 0], ["3", 0]
    return plain


def _latent(outcome: Any) -> Any:
    assert outcome.status == "success", outcome.error
    return outcome.values["5"][0][0]["samples"].numpy()


def test_controlnet_img2img_moves_the_image(run: Any) -> None:
    graph = _img2img(_graph("cn_v11__adv_s1.0__euler__normal"), mask=False)
    controlled, plain = _latent(run(graph, "i2i")), _latent(run(_without_control(graph), "i2i-plain"))
    assert np.abs(controlled - plain).mean() > 1e-3


def test_controlnet_inpaint_keeps_the_unmasked_latent(run: Any) -> None:
    graph = _img2img(_graph("cn_v11__adv_s1.0__euler__normal"), mask=True)
    outcome = run(graph, "inpaint")
    controlled = _latent(outcome)
    original = outcome.values["61"][0][0]["samples"].numpy()
    mask = outcome.values["63"][0][0]["noise_mask"].reshape(1, 1, 64, 128)
    small = torch.nn.functional.interpolate(mask.float(), size=controlled.shape[2:], mode="bilinear").numpy()
    keep = np.broadcast_to(small == 0, controlled.shape)  # cells the sampler never changes
    assert keep.any() and (~keep).any()
    plain = _latent(run(_without_control(graph), "inpaint-plain"))
    assert np.allclose(controlled[keep], original[keep], atol=1e-4)
    assert np.abs(controlled - plain)[~keep].mean() > 1e-3


def test_t2i_img2img_and_light_adapter(run: Any) -> None:
    graph = _img2img(_graph("t2i_depth__adv_s1.0__euler__normal"), mask=False)
    full = _latent(run(graph, "t2i-i2i"))
    loader = next(k for k, v in graph.items() if v["class_type"] == "ControlNetLoader")
    graph[loader]["inputs"]["control_net_name"] = "tiny-t2iadapter_color_sd14v1.safetensors"
    light = _latent(run(graph, "t2i-light"))
    plain = _latent(run(_without_control(graph), "t2i-plain"))
    assert np.abs(full - plain).mean() > 1e-3 and np.abs(light - plain).mean() > 1e-3
    assert not np.array_equal(full, light)


def test_sdxl_controlnet_chain_sums(run: Any) -> None:
    graph = _graph("sdxl_cn__adv_s0.9_hint_crop__euler__normal")
    apply = next(k for k, v in graph.items() if v["class_type"] == "ControlNetApplyAdvanced")
    sampler = graph["5"]["inputs"]
    graph["90"] = copy.deepcopy(graph[apply])
    graph["90"]["inputs"].update(positive=[apply, 0], negative=[apply, 1], strength=0.4, end_percent=0.5)
    sampler["positive"], sampler["negative"] = ["90", 0], ["90", 1]
    one = _latent(run(_graph("sdxl_cn__adv_s0.9_hint_crop__euler__normal"), "sdxl-one"))
    two = _latent(run(graph, "sdxl-two"))
    assert np.abs(one - two).mean() > 1e-4
