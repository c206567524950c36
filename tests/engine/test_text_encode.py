"""CLIP text encoding against ComfyUI's golden conditioning: plain, weighted, clip skip, textual inversion."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.device import DevicePolicy
from engine.handles import ClipHandle
from engine.loading import load_checkpoint
from engine.model_management import ModelManager
from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def clip(fixtures_dir: Path) -> ClipHandle:
    _, c, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()))
    assert c is not None
    return c


def _cases(fixtures_dir: Path) -> list[tuple[str, str, Path]]:
    out = []
    for f in sorted((fixtures_dir / "tiny-sd15").glob("golden*/*.json")):
        j = json.loads(f.read_text())
        args = j.get("args", {})
        pos, neg = j.get("prompt") or args.get("prompt"), j.get("negative") or args.get("negative")
        if pos is not None and neg is not None:
            out.append((pos, neg, f.with_suffix("")))
    return out


def test_golden_conditioning(clip: ClipHandle, fixtures_dir: Path) -> None:
    cases = _cases(fixtures_dir)
    assert len(cases) >= 8
    seen_weighted = False
    for pos, neg, stem in cases:
        seen_weighted |= "(photo:1.3)" in pos
        for text, suffix in ((pos, ".cond.npy"), (neg, ".uncond.npy")):
            ref = np.load(f"{stem}{suffix}")
            [[cond, extra]] = clip.encode(text)
            assert cond.shape == ref.shape
            assert _rel(cond.numpy(), ref) <= 1e-4, (stem.name, text)
            assert extra["pooled_output"].shape == (1, 32)
    assert seen_weighted


def test_weights_interpolate_from_empty_prompt(clip: ClipHandle) -> None:
    plain = clip.encode_from_tokens(clip.tokenize("a cat"))
    weighted = clip.encode_from_tokens(clip.tokenize("a (cat:1.5)"))
    empty = clip.encode_from_tokens(clip.tokenize(""))
    assert isinstance(plain, torch.Tensor) and isinstance(weighted, torch.Tensor) and isinstance(empty, torch.Tensor)
    expected = plain.clone()
    expected[0, 2] = (plain[0, 2] - empty[0, 2]) * 1.5 + empty[0, 2]
    assert torch.allclose(weighted, expected, atol=1e-5)


def test_long_prompt_concatenates_windows(clip: ClipHandle) -> None:
    cond = clip.encode_from_tokens(clip.tokenize(" ".join(["cat"] * 100)))
    assert isinstance(cond, torch.Tensor) and cond.shape == (1, 154, 32)


def test_clip_skip_equals_truncated_encoder() -> None:
    torch.manual_seed(0)
    cfg = ClipTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2)
    full = ClipTextEncoder(cfg).eval()
    short = ClipTextEncoder(ClipTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2)).eval()
    short.load_state_dict({k: v for k, v in full.state_dict().items() if "layers.2." not in k})
    ids = torch.tensor([[49406, 320, 2368, 49407] + [49407] * 73])
    with torch.no_grad():
        skipped, _ = full(ids, -2)
        last, _ = short(ids, -1)
        deepest, _ = full(ids, -1)
        too_far, _ = full(ids, -10)
    assert torch.allclose(skipped, last, atol=1e-6)
    assert not torch.allclose(skipped, deepest, atol=1e-3)
    assert torch.equal(too_far, deepest)


def test_set_clip_skip_on_clone_only(clip: ClipHandle) -> None:
    other = clip.clone()
    other.set_clip_skip(-2)
    assert clip.layer_idx is None and other.layer_idx == -2
    a = clip.encode_from_tokens(clip.tokenize("a cat"))
    b = other.encode_from_tokens(other.tokenize("a cat"))
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="negative"):
        other.set_clip_skip(1)


def test_textual_inversion_golden(fixtures_dir: Path, tmp_path: Path) -> None:
    emb_dir = tmp_path / "embeddings"
    emb_dir.mkdir()
    shutil.copy(fixtures_dir / "families/tiny-sd15-ti.safetensors", emb_dir)
    _, clip, _ = load_checkpoint(fixtures_dir / "tiny-sd15/tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()),
                                 embedding_directory=str(emb_dir))
    assert clip is not None
    stem = fixtures_dir / "families/golden/comfy__sd15__textual_inversion__euler__normal"
    graph = json.loads(Path(f"{stem}.json").read_text())["graph"]
    [[cond, extra]] = clip.encode(graph["2"]["inputs"]["text"])
    ref = np.load(f"{stem}.cond.npy")
    assert _rel(cond.numpy(), ref) <= 1e-4
    ref_pooled = np.load(f"{stem}.cond_pooled.npy")
    assert _rel(extra["pooled_output"].numpy(), ref_pooled) <= 1e-4
