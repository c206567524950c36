"""ComfyUI-compatible prompt tokenizer: emphasis weights, 77-token windows, ``embedding:`` names.

Follows ComfyUI's ``sd1_clip`` rules: ``(text)`` multiplies the weight by 1.1 per nesting level,
``(text:1.3)`` sets it, ``\\(`` / ``\\)`` are literal parentheses, square brackets are ordinary text. Each
weighted segment is tokenized as a whole; a window holds start + 75 + end tokens; a segment of fewer than
8 tokens that does not fit moves to the next window whole, a longer one is split.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["PromptTokenizer", "TokenWeight", "TokenWordId", "parse_weights", "default_tokenizer_dir",
           "prewarm_default_bpe", "without_word_ids"]

# one position of a window: a token id or an embedding vector, with its weight
TokenWeight = tuple[Union[int, torch.Tensor], float]
# the same with its word id (ComfyUI's `return_word_ids=True`): 1 + the index of the prompt segment the token
# came from, 0 for start / end / padding
TokenWordId = tuple[Union[int, torch.Tensor], float, int]


def without_word_ids(windows: list[list[TokenWordId]]) -> list[list[TokenWeight]]:
    """Windows of (token, weight, word id) -> windows of (token, weight)."""
    return [[(t, w) for t, w, _ in window] for window in windows]

_ESC_CLOSE = "\0\1"
_ESC_OPEN = "\0\2"


def default_tokenizer_dir() -> Path:
    """The CLIP BPE files shipped with Loom (vocab.json, merges.txt)."""
    return Path(__file__).parent / "tokenizers" / "sd1"


# Parsed BPE tokenizers, shared process-wide: (real folder, its files' mtimes and sizes, max length) ->
# (tokenizer, lock). Building one parses vocab.json + merges.txt (~100-500 ms); every checkpoint load makes
# a PromptTokenizer per text tower, so they reuse the parsed one. The lock serialises calls into it (the
# fast tokenizer's Rust object refuses concurrent mutable borrows).
_BPE_CACHE: dict[tuple[Any, ...], tuple[Any, threading.Lock]] = {}
_BPE_CACHE_LOCK = threading.Lock()


def _folder_stamp(folder: Path) -> tuple[Any, ...]:
    """The folder's real path plus name, mtime and size of every file in it (a changed file parses again)."""
    real = os.path.realpath(folder)
    try:
        entries = sorted((e.name, st.st_mtime_ns, st.st_size) for e in os.scandir(real) if e.is_file()
                         for st in (e.stat(),))
    except OSError:
        entries = []
    return (real, tuple(entries))


def shared_bpe(folder: Path, max_length: int) -> tuple[Any, threading.Lock]:
    """The parsed CLIP BPE tokenizer of ``folder`` (built once per folder version), with its call lock."""
    key = (*_folder_stamp(folder), max_length)
    hit = _BPE_CACHE.get(key)
    if hit is not None:
        return hit
    with _BPE_CACHE_LOCK:
        hit = _BPE_CACHE.get(key)
        if hit is None:
            from transformers import CLIPTokenizer

            stale = [k for k in _BPE_CACHE if k[0] == key[0] and k[2] == max_length]
            for k in stale:  # an older version of the same folder
                del _BPE_CACHE[k]
            hit = (CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length), threading.Lock())
            _BPE_CACHE[key] = hit
        return hit


def prewarm_default_bpe() -> None:
    """Parse the shipped CLIP BPE files (and import transformers' tokenizer) ahead of the first prompt."""
    shared_bpe(default_tokenizer_dir(), PromptTokenizer.max_length)


def _split_parentheses(text: str) -> list[str]:
    """Split into top-level ``(...)`` groups and the plain text between them."""
    out: list[str] = []
    cur = ""
    depth = 0
    for ch in text:
        if ch == "(":
            if depth == 0:
                if cur:
                    out.append(cur)
                cur = "("
            else:
                cur += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out.append(cur + ")")
                cur = ""
            else:
                cur += ch
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _weights(text: str, weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in _split_parentheses(text):
        w = weight
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            inner = part[1:-1]
            colon = inner.rfind(":")
            w *= 1.1
            if colon > 0:
                try:
                    w = float(inner[colon + 1:])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out += _weights(inner, w)
        else:
            out.append((part, weight))
    return out


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Prompt -> [(segment, weight)] with ComfyUI's emphasis rules (escaped parens kept literal)."""
    escaped = text.replace("\\)", _ESC_CLOSE).replace("\\(", _ESC_OPEN)
    return [(seg.replace(_ESC_CLOSE, ")").replace(_ESC_OPEN, "("), w) for seg, w in _weights(escaped, 1.0)]


EmbeddingLookup = Callable[[str], "torch.Tensor | None"]


@dataclass
class PromptTokenizer:
    """CLIP BPE tokenizer with ComfyUI's windowing.

    Parameters: pad_token: 49407 (SD1 CLIP-L) or 0 (OpenCLIP); tokenizer_dir: folder with vocab/merges;
    embedding_lookup: name -> [N, C] tensor (or None when unknown) for ``embedding:name``.
    """

    pad_token: int = 49407
    tokenizer_dir: Path | None = None
    embedding_lookup: EmbeddingLookup | None = None
    max_length: int = 77
    max_word_length: int = 8
    start_token: int = 49406
    end_token: int = 49407
    embedding_identifier: str = "embedding:"

    def __post_init__(self) -> None:
        folder = self.tokenizer_dir or default_tokenizer_dir()
        self._bpe, self._bpe_lock = shared_bpe(Path(folder), self.max_length)

    def _ids(self, text: str) -> list[int]:
        with self._bpe_lock:
            ids = self._bpe(text)["input_ids"]
        return list(ids[1:-1])

    def _groups(self, text: str) -> list[list[TokenWeight]]:
        groups: list[list[TokenWeight]] = []
        ident = self.embedding_identifier
        for segment, weight in parse_weights(text):
            pieces = re.split(f" {ident}|\n{ident}", segment)
            words = [pieces[0]] + [ident + p for p in pieces[1:]]
            for word in (w for w in words if w != ""):
                if word.startswith(ident) and self.embedding_lookup is not None:
                    name, leftover = self._split_embedding_name(word[len(ident):].strip("\n"))
                    embed = self.embedding_lookup(name)
                    if embed is None:
                        raise ValueError(
                            f"prompt uses embedding:{name} but no file named {name}(.safetensors/.pt/.bin) is "
                            "in the embeddings folder; add it there or remove the word from the prompt"
                        )
                    vecs = embed if embed.ndim == 2 else embed[None]
                    groups.append([(vecs[i], weight) for i in range(vecs.shape[0])])
                    if not leftover:
                        continue
                    word = leftover
                groups.append([(t, weight) for t in self._ids(word)])
        return groups

    @staticmethod
    def _split_embedding_name(rest: str) -> tuple[str, str]:
        """The embedding name runs to the first whitespace or comma; the rest is ordinary text."""
        m = re.match(r"[^\s,]+", rest)
        if m is None:
            return rest, ""
        return m.group(0), rest[m.end():]

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False
                              ) -> list[list[TokenWeight]] | list[list[TokenWordId]]:
        """Prompt -> windows of ``max_length`` (token, weight) pairs, padded; with ``return_word_ids``
        (token, weight, word id) triples, word ids numbering the prompt's segments from 1 (0: start/end/pad)."""
        windows: list[list[TokenWordId]] = []
        batch: list[TokenWordId] = [(self.start_token, 1.0, 0)]
        windows.append(batch)
        limit = self.max_length - 1  # room for the end token
        for word_id, pairs in enumerate(self._groups(text), start=1):
            group = [(t, w, word_id) for t, w in pairs]
            is_large = len(group) >= self.max_word_length
            while group:
                if len(group) + len(batch) > limit:
                    remaining = self.max_length - len(batch) - 1
                    if is_large:
                        batch.extend(group[:remaining])
                        batch.append((self.end_token, 1.0, 0))
                        group = group[remaining:]
                    else:
                        batch.append((self.end_token, 1.0, 0))
                        batch.extend([(self.pad_token, 1.0, 0)] * remaining)
                    batch = [(self.start_token, 1.0, 0)]
                    windows.append(batch)
                else:
                    batch.extend(group)
                    group = []
        batch.append((self.end_token, 1.0, 0))
        batch.extend([(self.pad_token, 1.0, 0)] * (self.max_length - len(batch)))
        return windows if return_word_ids else without_word_ids(windows)

    def tokenizer(self, text: str) -> dict[str, list[int]]:
        """ComfyUI's ``SDTokenizer.tokenizer`` (the BPE call): ``{"input_ids": [start, ..., end]}``, unpadded."""
        return {"input_ids": [self.start_token, *self._ids(text), self.end_token]}

    def empty_tokens(self) -> list[int]:
        """The empty prompt's window: start, end, then padding."""
        return [self.start_token, self.end_token] + [self.pad_token] * (self.max_length - 2)
