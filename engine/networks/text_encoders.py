"""Text encoders. SD1.x CLIP-L through transformers' CLIPTextModel, built from a config (no download).

``ClipTextEncoder.transformer`` is the CLIPTextModel, so the checkpoint's
``cond_stage_model.transformer.text_model.*`` keys load (prefix ``cond_stage_model.`` stripped).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ClipTextConfig:
    """CLIP text tower hyper-parameters (heads cannot be read from shapes: family default or metadata)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768


class ClipTextEncoder(nn.Module):
    """CLIP-L style text tower. forward(tokens, layer) -> (hidden [B,T,C], pooled [B,C]).

    Parameters: config: ClipTextConfig; dtype/device: parameter placement;
    layer_norm_hidden_state: apply final_layer_norm to an intermediate layer's output (SD1 clip skip).
    """

    def __init__(self, config: ClipTextConfig, dtype: torch.dtype | None = None, device: Any = None,
                 layer_norm_hidden_state: bool = True) -> None:
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        hf = CLIPTextConfig(**asdict(config), bos_token_id=0, eos_token_id=2, pad_token_id=1,
                            attention_dropout=0.0, dropout=0.0)
        hf._attn_implementation = "sdpa"
        self.config = config
        self.layer_norm_hidden_state = layer_norm_hidden_state
        # transformers 5's CLIPTextModel holds embeddings/encoder/final_layer_norm directly; the checkpoint
        # nests them under ``transformer.text_model``, so wrap it once more.
        self.transformer = nn.Module()
        self.transformer.text_model = CLIPTextModel(hf)
        self.transformer.to(dtype=dtype or torch.float32, device=device)
        self.transformer.eval()

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    def forward(self, tokens: torch.Tensor, layer: int = -1,
                injected: list[tuple[int, int, torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token ids; ``layer`` -1 = last layer (final-normed), -2 = penultimate, ...

        ``injected``: (batch row, position, vector) triples that replace those positions' token embeddings
        (textual inversion); the ids there should be a placeholder below the end token.
        """
        handle = None
        if injected:
            def replace(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
                output = output.clone()
                for row, pos, vec in injected:
                    output[row, pos] = vec.to(output)
                return output

            handle = self.transformer.text_model.embeddings.token_embedding.register_forward_hook(replace)
        try:
            out = self.transformer.text_model(input_ids=tokens, output_hidden_states=layer != -1)
        finally:
            if handle is not None:
                handle.remove()
        final = out.last_hidden_state
        if layer == -1 or abs(layer) > self.num_layers:
            hidden = final
        else:
            hidden = out.hidden_states[layer]
            if self.layer_norm_hidden_state:
                hidden = self.transformer.text_model.final_layer_norm(hidden)
        # pooled = final-normed state at the first end-of-text token (the highest id in CLIP's vocab)
        eos = tokens.to(torch.long).argmax(dim=-1)
        pooled = final[torch.arange(final.shape[0], device=final.device), eos]
        return hidden, pooled
