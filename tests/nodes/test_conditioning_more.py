"""ConditioningAverage, ConditioningConcat and ConditioningSetAreaStrength (ComfyUI names, inputs, semantics)."""
from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from nodes._base import NodeInputError


def call(registry: Any, name: str, **kwargs: Any) -> Any:
    cls = registry.get(name)
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def entry(seed: int, tokens: int = 77, pooled: bool = True, **opts: Any) -> list[Any]:
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, tokens, 768, generator=g)
    if pooled:
        opts["pooled_output"] = torch.randn(1, 768, generator=g)
    return [cond, opts]


def test_catalogue_lists_the_conditioning_nodes(registry: Any) -> None:
    info = registry.object_info()
    avg = info["ConditioningAverage"]
    assert avg["input"]["required"] == {
        "conditioning_to": ["CONDITIONING"], "conditioning_from": ["CONDITIONING"],
        "conditioning_to_strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}
    assert avg["input_order"]["required"] == ["conditioning_to", "conditioning_from", "conditioning_to_strength"]
    assert avg["output"] == ["CONDITIONING"] and avg["category"] == "conditioning"
    assert avg["display_name"] == "ConditioningAverage"
    cat = info["ConditioningConcat"]
    assert cat["input"]["required"] == {"conditioning_to": ["CONDITIONING"], "conditioning_from": ["CONDITIONING"]}
    assert cat["output"] == ["CONDITIONING"] and cat["display_name"] == "Conditioning (Concat)"
    st = info["ConditioningSetAreaStrength"]
    assert st["input"]["required"] == {
        "conditioning": ["CONDITIONING"],
        "strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}]}
    assert st["output"] == ["CONDITIONING"] and st["category"] == "conditioning"


def test_average_strength_one_and_zero_give_to_and_from(registry: Any) -> None:
    to, frm = [entry(1, extra="kept")], [entry(2)]
    (one,) = call(registry, "ConditioningAverage", conditioning_to=to, conditioning_from=frm,
                  conditioning_to_strength=1.0)
    assert torch.equal(one[0][0], to[0][0]) and torch.equal(one[0][1]["pooled_output"], to[0][1]["pooled_output"])
    assert one[0][1]["extra"] == "kept"
    (zero,) = call(registry, "ConditioningAverage", conditioning_to=to, conditioning_from=frm,
                   conditioning_to_strength=0.0)
    assert torch.equal(zero[0][0], frm[0][0])
    assert torch.equal(zero[0][1]["pooled_output"], frm[0][1]["pooled_output"])
    (mid,) = call(registry, "ConditioningAverage", conditioning_to=to, conditioning_from=frm,
                  conditioning_to_strength=0.25)
    assert torch.allclose(mid[0][0], 0.25 * to[0][0] + 0.75 * frm[0][0])
    assert torch.allclose(mid[0][1]["pooled_output"], 0.25 * to[0][1]["pooled_output"]
                          + 0.75 * frm[0][1]["pooled_output"])
    assert "pooled_output" in to[0][1] and to[0][0].shape == (1, 77, 768)  # inputs untouched


def test_average_cuts_or_zero_pads_from_to_each_to_length(registry: Any) -> None:
    short, long = entry(1, 77), entry(2, 154)
    (cut,) = call(registry, "ConditioningAverage", conditioning_to=[short], conditioning_from=[long],
                  conditioning_to_strength=0.5)
    assert cut[0][0].shape == (1, 77, 768)
    assert torch.allclose(cut[0][0], 0.5 * short[0] + 0.5 * long[0][:, :77])
    (padded,) = call(registry, "ConditioningAverage", conditioning_to=[long], conditioning_from=[short],
                     conditioning_to_strength=0.5)
    assert padded[0][0].shape == (1, 154, 768)
    assert torch.allclose(padded[0][0][:, :77], 0.5 * long[0][:, :77] + 0.5 * short[0])
    assert torch.allclose(padded[0][0][:, 77:], 0.5 * long[0][:, 77:])


def test_average_pooled_output_fallbacks(registry: Any) -> None:
    frm = entry(2)
    (no_pooled_to,) = call(registry, "ConditioningAverage", conditioning_to=[entry(1, pooled=False)],
                           conditioning_from=[frm], conditioning_to_strength=0.3)
    assert torch.allclose(no_pooled_to[0][1]["pooled_output"], frm[1]["pooled_output"])
    (none_to,) = call(registry, "ConditioningAverage", conditioning_to=[entry(1, pooled=False, pooled_output=None)],
                      conditioning_from=[frm], conditioning_to_strength=0.3)
    assert none_to[0][1]["pooled_output"] is frm[1]["pooled_output"]
    to = entry(1)
    (none_from,) = call(registry, "ConditioningAverage", conditioning_to=[to],
                        conditioning_from=[entry(2, pooled=False)], conditioning_to_strength=0.3)
    assert none_from[0][1]["pooled_output"] is to[1]["pooled_output"]


def test_average_applies_only_the_first_from_entry(registry: Any, caplog: pytest.LogCaptureFixture) -> None:
    to = [entry(1), entry(3)]
    frm = [entry(2), entry(4)]
    with caplog.at_level(logging.WARNING):
        (out,) = call(registry, "ConditioningAverage", conditioning_to=to, conditioning_from=frm,
                      conditioning_to_strength=0.0)
    assert "only the first" in caplog.text
    assert len(out) == 2 and all(torch.equal(o[0], frm[0][0]) for o in out)
    with pytest.raises(NodeInputError, match="ConditioningAverage.*conditioning_from"):
        call(registry, "ConditioningAverage", conditioning_to=to, conditioning_from=[], conditioning_to_strength=0.5)


def test_concat_appends_the_from_tokens(registry: Any) -> None:
    to, frm = [entry(1, extra="kept"), entry(3)], [entry(2)]
    (out,) = call(registry, "ConditioningConcat", conditioning_to=to, conditioning_from=frm)
    assert len(out) == 2
    assert out[0][0].shape == (1, 154, 768)
    assert torch.equal(out[0][0][:, :77], to[0][0]) and torch.equal(out[0][0][:, 77:], frm[0][0])
    assert torch.equal(out[1][0][:, :77], to[1][0])
    assert out[0][1]["extra"] == "kept" and out[0][1]["pooled_output"] is to[0][1]["pooled_output"]
    assert out[0][1] is not to[0][1] and to[0][0].shape == (1, 77, 768)
    with pytest.raises(NodeInputError, match="ConditioningConcat.*token width 32"):
        call(registry, "ConditioningConcat", conditioning_to=to, conditioning_from=[[torch.zeros(1, 77, 32), {}]])


def test_set_area_strength_sets_strength_only(registry: Any) -> None:
    src = [[torch.zeros(1, 77, 768), {"area": (8, 8, 0, 0), "strength": 1.0}], entry(5)]
    (out,) = call(registry, "ConditioningSetAreaStrength", conditioning=src, strength=2.5)
    assert [o[1]["strength"] for o in out] == [2.5, 2.5]
    assert out[0][1]["area"] == (8, 8, 0, 0) and out[0][0] is src[0][0]
    assert src[0][1]["strength"] == 1.0 and "strength" not in src[1][1]
