"""Prompt tokenizer: ComfyUI emphasis syntax, 77-token windows, golden token ids and weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.tokenizer import PromptTokenizer, parse_weights


@pytest.fixture(scope="module")
def tok() -> PromptTokenizer:
    return PromptTokenizer()


def _golden_cases(fixtures_dir: Path) -> list[tuple[str, list[list[int]], list[list[float]] | None]]:
    cases = []
    files = sorted((fixtures_dir / "tiny-sd15").glob("golden*/*.json"))
    for f in files:
        j = json.loads(f.read_text())
        args = j.get("args", {})
        for text_key, tok_key, w_key in (("prompt", "tokens", "token_weights"),
                                         ("negative", "neg_tokens", "neg_token_weights")):
            text = j.get(text_key) or args.get(text_key)
            if text is None or not j.get(tok_key):
                continue
            cases.append((text, j[tok_key]["l"], (j.get(w_key) or {}).get("l")))
    return cases


def test_golden_token_ids_and_weights(tok: PromptTokenizer, fixtures_dir: Path) -> None:
    cases = _golden_cases(fixtures_dir)
    assert len(cases) >= 10
    assert any("(photo:1.3)" in text for text, _, _ in cases)
    for text, ids, weights in cases:
        windows = tok.tokenize_with_weights(text)
        assert [[t for t, _ in w] for w in windows] == ids, text
        if weights is not None:
            got = [w for win in windows for _, w in win]
            assert got == pytest.approx([w for win in weights for w in win]), text


def test_parse_weights_rules() -> None:
    assert parse_weights("a (b) c") == [("a ", 1.0), ("b", pytest.approx(1.1)), (" c", 1.0)]
    assert parse_weights("((x))") == [("x", pytest.approx(1.21))]
    assert parse_weights("(x:0.5)") == [("x", 0.5)]
    assert parse_weights("[x]") == [("[x]", 1.0)]  # brackets are plain text in ComfyUI
    assert parse_weights(r"\(lit\)") == [("(lit)", 1.0)]
    assert parse_weights("(a:b:1.5)") == [("a:b", 1.5)]
    assert parse_weights("(x:bad)") == [("x:bad", pytest.approx(1.1))]


def test_window_layout(tok: PromptTokenizer) -> None:
    (w,) = tok.tokenize_with_weights("a cat")
    assert len(w) == 77 and w[0] == (49406, 1.0) and w[3] == (49407, 1.0) and w[-1] == (49407, 1.0)
    zero = PromptTokenizer(pad_token=0)
    (w0,) = zero.tokenize_with_weights("a cat")
    assert w0[3] == (49407, 1.0) and w0[4:] == [(0, 1.0)] * 73


def test_long_prompt_splits_into_windows(tok: PromptTokenizer) -> None:
    # 40 short comma-separated segments: none may be split across windows
    text = ", ".join(["(red:1.2) cat"] * 40)
    windows = tok.tokenize_with_weights(text)
    assert len(windows) >= 2
    for w in windows:
        assert len(w) == 77 and w[0][0] == 49406
    content = [t for w in windows for t, _ in w if t not in (49406, 49407)]
    single = [t for seg, _ in parse_weights(text) for t in tok._ids(seg)]
    assert content == single


def test_large_word_group_is_split_across_windows(tok: PromptTokenizer) -> None:
    text = " ".join(["cat"] * 100)  # one segment of 100 tokens
    windows = tok.tokenize_with_weights(text)
    assert len(windows) == 2
    assert [t for t, _ in windows[0]].count(2368) == 75
    assert [t for t, _ in windows[1]].count(2368) == 25


def test_embedding_lookup(tmp_path: Path) -> None:
    vecs = torch.randn(2, 32)
    t = PromptTokenizer(embedding_lookup=lambda name: vecs if name == "ti" else None)
    (w,) = t.tokenize_with_weights("a embedding:ti, cat")
    assert torch.equal(w[2][0], vecs[0]) and torch.equal(w[3][0], vecs[1])  # type: ignore[arg-type]
    assert w[4][0] == 267  # the comma after the name stays
    with pytest.raises(ValueError, match="embedding:missing"):
        t.tokenize_with_weights("embedding:missing")
