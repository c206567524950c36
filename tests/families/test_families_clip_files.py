"""Which family a stand-alone text-encoder file (or pair) serves, from header facts of full-size towers."""
from __future__ import annotations

import pytest
import torch

from engine.clip_files import classify_towers, tower_layout
from engine.errors import UnknownModelError
from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder, OpenClipConfig, OpenClipTextEncoder


def _shapes(module: torch.nn.Module, prefix: str) -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def towers() -> dict[str, tuple[str, int, int]]:
    with torch.device("meta"):
        clip_l = ClipTextEncoder(ClipTextConfig())
        vit_h = OpenClipTextEncoder(OpenClipConfig(width=1024, layers=24, heads=16, mlp_width=4096))
        big_g = OpenClipTextEncoder(OpenClipConfig(width=1280, layers=32, heads=20, mlp_width=5120,
                                                   projection_dim=1280))
    hf_l = {k.removeprefix("transformer."): v for k, v in _shapes(clip_l, "").items()}
    facts = {
        "clip_l": tower_layout(hf_l),
        "clip_l_prefixed": tower_layout(_shapes(clip_l, "cond_stage_model.")),
        "vit_h_openclip": tower_layout(_shapes(vit_h, "cond_stage_model.model.")),
        "big_g_openclip": tower_layout(_shapes(big_g, "")),
        # an HF-layout bigG: 32 'text_model.encoder.layers.N' entries plus text_projection
        "big_g_hf": tower_layout({"text_model.embeddings.token_embedding.weight": (49408, 1280),
                                  **{f"text_model.encoder.layers.{i}.mlp.fc1.weight": (5120, 1280)
                                     for i in range(32)}, "text_projection.weight": (1280, 1280)}),
        "vit_h_hf": tower_layout({"text_model.embeddings.token_embedding.weight": (49408, 1024),
                                  **{f"text_model.encoder.layers.{i}.mlp.fc1.weight": (4096, 1024)
                                     for i in range(24)}}),
    }
    assert all(v is not None for v in facts.values())
    return facts  # type: ignore[return-value]


@pytest.mark.parametrize("name,clip_type,family,keys", [
    ("clip_l", "stable_diffusion", "sd15", ["l"]),
    ("clip_l_prefixed", "stable_diffusion", "sd15", ["l"]),
    ("vit_h_openclip", "stable_diffusion", "sd20", ["h"]),
    ("vit_h_hf", "stable_diffusion", "sd20", ["h"]),
    ("vit_h_hf", "sd2", "sd20", ["h"]),
    ("big_g_hf", "stable_diffusion", "sdxl_refiner", ["g"]),
    ("big_g_openclip", "stable_diffusion", "sdxl_refiner", ["g"]),
])
def test_single_files(towers: dict[str, tuple[str, int, int]], name: str, clip_type: str, family: str,
                      keys: list[str]) -> None:
    fam, got = classify_towers(clip_type, [towers[name]], [name])
    assert (fam.name, got) == (family, keys)


def test_sdxl_pair_in_either_order(towers: dict[str, tuple[str, int, int]]) -> None:
    for a, b in (("clip_l", "big_g_hf"), ("big_g_openclip", "clip_l")):
        fam, keys = classify_towers("sdxl", [towers[a], towers[b]], [a, b])
        assert fam.name == "sdxl" and keys == (["l", "g"] if a == "clip_l" else ["g", "l"])


def test_layouts_and_depths(towers: dict[str, tuple[str, int, int]]) -> None:
    assert towers["clip_l"] == ("hf", 768, 12)
    assert towers["vit_h_openclip"] == ("open_clip", 1024, 24)
    assert towers["big_g_openclip"] == ("open_clip", 1280, 32)


def test_errors_name_files_and_fixes(towers: dict[str, tuple[str, int, int]]) -> None:
    with pytest.raises(UnknownModelError, match="needs two files"):
        classify_towers("sdxl", [towers["clip_l"]], ["clip_l.safetensors"])
    with pytest.raises(UnknownModelError, match="DualCLIPLoader"):
        classify_towers("stable_diffusion", [towers["clip_l"], towers["big_g_hf"]], ["a", "b"])
    with pytest.raises(UnknownModelError, match="flux"):
        classify_towers("flux", [towers["clip_l"]], ["clip_l.safetensors"])
    with pytest.raises(UnknownModelError, match="neither"):
        classify_towers("sdxl", [towers["vit_h_openclip"], towers["big_g_openclip"]], ["h", "g"])
