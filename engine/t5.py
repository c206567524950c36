"""The T5 v1.1 encoder (SD3.x and Flux.1 text encoder) and its prompt tokenizer.

The network is transformers' ``T5EncoderModel`` with a config read from the file's shapes (heads from
``relative_attention_bias``), built on the meta device; its matrices and embeddings stay in the file's dtype
(fp16 / bf16 / fp8) and are cast per layer, only norm gains are held in the compute dtype. The tokenizer is the
Apache-2.0 T5 sentencepiece model shipped in ``engine/tokenizers/t5`` (offline): no start token, end token 1,
pad token 0, one window padded to at least ``min_length`` tokens (Flux 256, SD3 77).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UnknownModelError
from engine.networks.ops import ManualCast
from engine.patching import is_packed
from engine.tokenizer import TokenWeight, TokenWordId, parse_weights, without_word_ids

__all__ = ["T5Shape", "detect_t5", "T5TextEncoder", "T5PromptTokenizer", "T5_TOKENIZER_DIR", "is_t5"]

T5_TOKENIZER_DIR = Path(__file__).parent / "tokenizers" / "t5"
T5_PROBE = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
Shapes = Mapping[str, Sequence[int]]


def is_t5(shapes: Shapes, prefix: str = "") -> bool:
    return prefix + T5_PROBE in shapes


@dataclass(frozen=True)
class T5Shape:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    num_buckets: int


def detect_t5(shapes: Shapes, prefix: str = "", source: str = "text encoder") -> T5Shape:
    """T5 encoder config: heads = relative_attention_bias width, d_kv = q width / heads."""
    try:
        vocab, d_model = (int(x) for x in shapes[prefix + "shared.weight"])
        buckets, heads = (int(x) for x in shapes[prefix + T5_PROBE])
        inner = int(shapes[prefix + "encoder.block.0.layer.0.SelfAttention.q.weight"][0])
        d_ff = int(shapes[prefix + "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0])
    except KeyError as exc:
        raise UnknownModelError(f"{source}: T5 encoder layout not recognised (missing {exc}); only the gated "
                                "T5 v1.1 encoder (t5xxl) is supported") from exc
    blocks = {int(k[len(prefix) + len("encoder.block."):].split(".", 1)[0]) for k in shapes
              if k.startswith(prefix + "encoder.block.")}
    return T5Shape(vocab, d_model, inner // heads, d_ff, max(blocks) + 1, heads, buckets)


class _CastEmbedding(nn.Embedding):
    """An embedding whose table stays in the file's dtype; looked-up rows come out in float32."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).float()


def _gated_ff_forward(self: Any, hidden: torch.Tensor) -> torch.Tensor:
    """transformers' gated FF without its cast of the hidden state to ``wo``'s storage dtype (weights are cast
    to the input per layer instead, so the fp32 result is not rounded to fp16)."""
    out: torch.Tensor = self.wo(self.act(self.wi_0(hidden)) * self.wi_1(hidden))
    return out


class T5TextEncoder(nn.Module):
    """forward(tokens, layer, injected) -> (last hidden state after the final RMS norm, zeros pooled)."""

    def __init__(self, shape: T5Shape) -> None:
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        config = T5Config(vocab_size=shape.vocab_size, d_model=shape.d_model, d_kv=shape.d_kv, d_ff=shape.d_ff,
                          num_layers=shape.num_layers, num_heads=shape.num_heads,
                          relative_attention_num_buckets=shape.num_buckets, relative_attention_max_distance=128,
                          feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                          is_encoder_decoder=False, use_cache=False)
        with torch.device("meta"):
            self.transformer = T5EncoderModel(config)

    def adopt(self, sd: Mapping[str, torch.Tensor], source: str, operations: Any = None) -> None:
        """Take the file's tensors: matrices and tables as they are, norm gains in float32. With ``operations``
        (a pack's layer set) the linears and embeddings are those layers and read their own tensors."""
        from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

        gated = type("T5GatedFF", (T5DenseGatedActDense,), {"forward": _gated_ff_forward})
        for m in self.transformer.modules():
            if type(m) is T5DenseGatedActDense:
                m.__class__ = gated
        weights = {k: (v.float() if len(v.shape) < 2 and not is_packed(v) else v) for k, v in sd.items()}
        if operations is not None:
            from engine import pack_layers

            pack_layers.swap_layers(self.transformer, operations)
            self.transformer.encoder.embed_tokens = self.transformer.shared
            pack_layers.adopt(self.transformer, weights, "T5 encoder", source)
            return
        result = self.transformer.load_state_dict(weights, strict=False, assign=True)
        missing = [k for k in result.missing_keys if k != "encoder.embed_tokens.weight"]
        if missing or result.unexpected_keys:
            raise UnknownModelError(f"{source}: the T5 weights do not fit the detected layout (missing "
                                    f"{missing[:4]}, unexpected {result.unexpected_keys[:4]})")
        for m in self.transformer.modules():
            if type(m) is nn.Linear:
                m.__class__ = ManualCast.Linear
            elif type(m) is nn.Embedding:
                m.__class__ = _CastEmbedding
        self.transformer.encoder.embed_tokens = self.transformer.shared
        self.transformer.train(False)
        self.transformer.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, layer: int | None = None,
                injected: list[tuple[int, int, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if injected:
            raise ValueError("T5: textual-inversion embeddings are not supported for the T5 encoder")
        hidden = self.transformer(input_ids=tokens).last_hidden_state
        return hidden, torch.zeros(hidden.shape[0], hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)


_TOKENIZERS: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def _sentencepiece(folder: Path) -> Any:
    with _TOKENIZER_LOCK:
        tok = _TOKENIZERS.get(str(folder))
        if tok is None:
            from tokenizers import Tokenizer

            tok = _TOKENIZERS[str(folder)] = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return tok


@dataclass
class T5PromptTokenizer:
    """T5 tokenization with ComfyUI's weight syntax; one window padded to ``min_length``."""

    min_length: int = 256
    pad_token: int = 0
    end_token: int = 1
    tokenizer_dir: Path = T5_TOKENIZER_DIR

    def _ids(self, text: str) -> list[int]:
        tok = _sentencepiece(self.tokenizer_dir)
        with _TOKENIZER_LOCK:
            ids = tok.encode(text, add_special_tokens=False).ids
        return [int(i) for i in ids]

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False
                              ) -> list[list[TokenWeight]] | list[list[TokenWordId]]:
        """Prompt -> one window of (token, weight) (or, with ``return_word_ids``, (token, weight, segment no.))."""
        window: list[TokenWordId] = []
        segments = [(segment, weight) for segment, weight in parse_weights(text) if segment]
        for word_id, (segment, weight) in enumerate(segments, start=1):
            window.extend((t, weight, word_id) for t in self._ids(segment))
        window.append((self.end_token, 1.0, 0))
        window.extend([(self.pad_token, 1.0, 0)] * (self.min_length - len(window)))
        return [window] if return_word_ids else without_word_ids([window])

    def empty_tokens(self) -> list[int]:
        return [self.end_token] + [self.pad_token] * (self.min_length - 1)
