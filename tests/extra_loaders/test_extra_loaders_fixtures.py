"""The derived fixtures built at test time equal the README's content hashes (so they are the files ComfyUI saw)."""
from __future__ import annotations

from pathlib import Path

import torch
from catalogue_derive import content_hash  # type: ignore[import-not-found]
from safetensors import safe_open


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_ip2p_and_gligen_match_the_readme_hashes(derived: dict[str, Path]) -> None:
    assert content_hash(_tensors(derived["ip2p"])) == \
        "8667198952a12d1ea53ef61a1d5534c978b2f82d00e2032be8e2fbb72610e9dd"
    assert content_hash(_tensors(derived["gligen"])) == \
        "63ec4840d1383176707d53f309bc9078fce3d897837e3bc275466854dd6dd007"


def test_diffusers_and_hypernetwork_match_the_readme_hash_ends(derived: dict[str, Path]) -> None:
    root = derived["diffusers"]
    ends = {"unet": ("c670c5bd", "f0999"), "vae": ("34355ba7", "4c81"), "text_encoder": ("7febbe7b", "74f9a")}
    for part, (head, tail) in ends.items():
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        h = content_hash(_tensors(root / part / name))
        assert h.startswith(head) and h.endswith(tail), (part, h)
    hn = torch.load(str(derived["hypernetwork"]), weights_only=True)
    flat = {f"{d}.{i}.{k}": v for d in (32, 64, 128) for i, m in enumerate(hn[d]) for k, v in m.items()}
    h = content_hash(flat)
    assert h.startswith("f10b1538") and h.endswith("a32b7"), h
