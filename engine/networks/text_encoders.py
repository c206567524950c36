# mypy: disable-error-code="arg-type,no-any-return,operator,union-attr"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""Text encoders: CLIP-L (HF CLIPTextModel layout, implemented here) and OpenCLIP text towers.

The CLIP-L tower is Loom's own module with transformers' attribute names, so checkpoints load unchanged
without importing transformers (whose import alone costs seconds at the first checkpoint load).

Both take token ids and return (hidden [B,T,C], pooled [B,P]); attribute names match checkpoint keys:
CLIP-L under ``transformer.text_model.*`` (SD1 ``cond_stage_model.``, SDXL ``conditioner.embedders.0.``),
OpenCLIP under ``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N``, ``ln_final``,
``text_projection`` (SD2 ``cond_stage_model.model.``, SDXL ``conditioner.embedders.1.model.``).

Layer selection follows ComfyUI: ``layer`` None = the tower's default; an index -1, -2 ... takes that
layer's output (final-normed when ``layer_norm_hidden_state``); an index past the depth means "last".
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.networks.configs import ClipTextConfig as ClipTextConfig  # torch-free home; re-exported here
from engine.networks.configs import OpenClipConfig as OpenClipConfig

Injected = list[tuple[int, int, torch.Tensor]]


def _inject_hook(injected: Injected) -> Any:
    def replace(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, pos, vec in injected:
            output[row, pos] = vec.to(output)
        return output
    return replace


def _eos_index(tokens: torch.Tensor) -> torch.Tensor:
    # the end-of-text token has the highest id in CLIP's vocab; argmax takes its first occurrence
    return tokens.to(torch.long).argmax(dim=-1)


class _ClipEmbeddings(nn.Module):
    def __init__(self, cfg: ClipTextConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size, **kw)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size, **kw)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens)
        return x + self.position_embedding.weight[: tokens.shape[1]].to(x)


class _ClipAttention(nn.Module):
    """Causal multi-head self-attention (keys q_proj / k_proj / v_proj / out_proj)."""

    def __init__(self, cfg: ClipTextConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        w = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.q_proj = nn.Linear(w, w, **kw)
        self.k_proj = nn.Linear(w, w, **kw)
        self.v_proj = nn.Linear(w, w, **kw)
        self.out_proj = nn.Linear(w, w, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = (p(x).view(b, t, self.heads, w // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


def _activation(name: str) -> Any:
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        approximate = "none" if name == "gelu" else "tanh"
        return lambda x: F.gelu(x, approximate=approximate)
    raise ValueError(f"CLIP text config: hidden_act {name!r} is not supported (quick_gelu, gelu, gelu_new)")


class _ClipMlp(nn.Module):
    def __init__(self, cfg: ClipTextConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, **kw)
        self.act = _activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ClipLayer(nn.Module):
    def __init__(self, cfg: ClipTextConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
        self.self_attn = _ClipAttention(cfg, kw)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
        self.mlp = _ClipMlp(cfg, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class _ClipTextModel(nn.Module):
    """transformers' CLIPTextModel layout: embeddings, encoder.layers.N, final_layer_norm."""

    def __init__(self, cfg: ClipTextConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        self.embeddings = _ClipEmbeddings(cfg, kw)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(_ClipLayer(cfg, kw) for _ in range(cfg.num_hidden_layers))
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)

    def forward(self, tokens: torch.Tensor, stop: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(final-normed last hidden state, output of layer ``stop`` (0 = embeddings) or None)."""
        x = self.embeddings(tokens)
        picked = x if stop == 0 else None
        for i, layer in enumerate(self.encoder.layers):
            x = layer(x)
            if i + 1 == stop:
                picked = x
        return self.final_layer_norm(x), picked


class ClipTextEncoder(nn.Module):
    """CLIP-L style text tower (HF layout). forward(tokens, layer, injected) -> (hidden, pooled).

    Parameters: config: ClipTextConfig; dtype/device: parameter placement;
    layer_norm_hidden_state: apply final_layer_norm to an intermediate layer's output (SD1: yes, SDXL: no);
    default_layer: None = last layer (SD1), -2 = penultimate (SDXL).
    """

    def __init__(self, config: ClipTextConfig, dtype: torch.dtype | None = None, device: Any = None,
                 layer_norm_hidden_state: bool = True, default_layer: int | None = None) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype or torch.float32, "device": device}
        self.config = config
        self.layer_norm_hidden_state = layer_norm_hidden_state
        self.default_layer = default_layer
        # the checkpoint nests the tower under ``transformer.text_model``
        self.transformer = nn.Module()
        self.transformer.text_model = _ClipTextModel(config, kw)
        self.transformer.eval()

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    def forward(self, tokens: torch.Tensor, layer: int | None = None,
                injected: Injected | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token ids; ``injected`` (row, position, vector) replace token embeddings (textual inversion)."""
        layer = self.default_layer if layer is None else layer
        text_model = self.transformer.text_model
        # hidden_states indexing as transformers: [embeddings, layer 1, ..., layer N]; -1 = layer N
        stop = None if layer is None or abs(layer) > self.num_layers else layer % (self.num_layers + 1)
        handle = None
        if injected:
            handle = text_model.embeddings.token_embedding.register_forward_hook(_inject_hook(injected))
        try:
            final, picked = text_model(tokens, stop)
        finally:
            if handle is not None:
                handle.remove()
        if picked is None:
            hidden = final
        elif self.layer_norm_hidden_state:
            hidden = text_model.final_layer_norm(picked)
        else:
            hidden = picked
        pooled = final[torch.arange(final.shape[0], device=final.device), _eos_index(tokens)]
        return hidden, pooled


class _FusedAttention(nn.Module):
    """Causal self-attention with OpenCLIP's fused in_proj (keys in_proj_weight / in_proj_bias / out_proj)."""

    def __init__(self, width: int, heads: int, kw: dict[str, Any]) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width, **kw))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width, **kw))
        self.out_proj = nn.Linear(width, width, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, kw: dict[str, Any]) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden, **kw)
        self.c_proj = nn.Linear(hidden, width, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class _ResBlock(nn.Module):
    def __init__(self, cfg: OpenClipConfig, kw: dict[str, Any]) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps, **kw)
        self.attn = _FusedAttention(cfg.width, cfg.heads, kw)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps, **kw)
        self.mlp = _Mlp(cfg.width, cfg.mlp_width, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OpenClipTextEncoder(nn.Module):
    """OpenCLIP text tower. forward(tokens, layer, injected) -> (hidden, projected pooled EOS state).

    Parameters: config: OpenClipConfig; layer_norm_hidden_state: ln_final on an intermediate layer
    (SD2: yes, SDXL: no); default_layer: -2 (penultimate) for both SD2 and SDXL.
    """

    def __init__(self, config: OpenClipConfig, dtype: torch.dtype | None = None, device: Any = None,
                 layer_norm_hidden_state: bool = True, default_layer: int | None = -2) -> None:
        super().__init__()
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.config = config
        self.layer_norm_hidden_state = layer_norm_hidden_state
        self.default_layer = default_layer
        self.token_embedding = nn.Embedding(config.vocab_size, config.width, **kw)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width, **kw))
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(_ResBlock(config, kw) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.width, eps=config.layer_norm_eps, **kw)
        self.text_projection = nn.Parameter(torch.empty(config.width, config.projection_dim, **kw))

    @property
    def num_layers(self) -> int:
        return self.config.layers

    def forward(self, tokens: torch.Tensor, layer: int | None = None,
                injected: Injected | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token ids (see ClipTextEncoder.forward)."""
        layer = self.default_layer if layer is None else layer
        x = self.token_embedding(tokens)
        if injected:
            x = _inject_hook(injected)(self.token_embedding, (), x)
        x = x + self.positional_embedding[: tokens.shape[1]].to(x)
        stop = None if layer is None or abs(layer) > self.num_layers else self.num_layers + layer
        hidden: torch.Tensor | None = None
        for i, block in enumerate(self.transformer.resblocks):
            x = block(x)
            if i == stop:
                hidden = x
        final = self.ln_final(x)
        if hidden is None:
            hidden = final
        elif self.layer_norm_hidden_state:
            hidden = self.ln_final(hidden)
        pooled = final[torch.arange(final.shape[0], device=final.device), _eos_index(tokens)]
        return hidden, pooled @ self.text_projection.to(pooled)
