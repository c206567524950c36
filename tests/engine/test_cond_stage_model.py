"""ComfyUI's encoder API on a CLIP's ``cond_stage_model`` (advanced prompt encoders: ADV_CLIP_emb, Easy-Use, smZ):
``encode_token_weights`` for all towers and per tower, ``set_clip_options`` / ``reset_clip_options``, all run with
the handle's own layer and patches, equal to Loom's own encode."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.device import DevicePolicy
from engine.loading import load_checkpoint
from engine.model_management import ModelManager

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def clip() -> Any:
    _, clip, _ = load_checkpoint(FIX / "tiny-sd15" / "tiny-sd15.safetensors", ModelManager(DevicePolicy.cpu()))
    return clip


def test_encode_token_weights_equals_the_handle_s_encode(clip: Any) -> None:
    tokens = clip.tokenize("a (red:1.3) circle on a blue square")
    ref_cond, ref_pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    csm = clip.cond_stage_model
    cond, pooled = csm.encode_token_weights(tokens)
    assert torch.equal(cond, ref_cond) and torch.equal(pooled, ref_pooled)
    tower_cond, tower_pooled = csm.clip_l.encode_token_weights(tokens["l"])  # ADV_CLIP_emb's per-tower path
    assert torch.equal(tower_cond, ref_cond) and torch.equal(tower_pooled, ref_pooled)
    assert set(csm.keys()) == {"clip_l"} and csm.clip_l.tower is clip.encoders["clip_l"]
    assert csm.clip_l.num_layers == clip.encoders["clip_l"].num_layers  # the tower's own attributes


def test_clip_options_set_the_handle_s_layer(clip: Any) -> None:
    tokens = clip.tokenize("a red circle")
    skipped = clip.clone()
    skipped.clip_layer(-2)
    expected = skipped.encode_from_tokens(tokens)
    work = clip.clone()
    work.cond_stage_model.set_clip_options({"layer": -2})
    assert work.layer_idx == -2 and torch.equal(work.cond_stage_model.encode_token_weights(tokens)[0], expected)
    work.cond_stage_model.reset_clip_options()
    assert work.layer_idx is None and torch.equal(work.encode_from_tokens(tokens), clip.encode_from_tokens(tokens))
    assert clip.layer_idx is None  # the other handle is untouched
