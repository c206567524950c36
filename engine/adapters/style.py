# mypy: disable-error-code="arg-type,no-any-return,operator,union-attr"
# (network code: nn.Module attribute access and torch ops are typed loosely; the rest of engine is strict)
"""Style models (ComfyUI's STYLE_MODEL): TencentARC's T2I style adapter (``coadapter-style``).

Widths are read from the file: width = ``style_embedding.shape[2]``, tokens = ``style_embedding.shape[1]``,
context = ``proj.shape[1]``, layers = the count of ``transformer_layes.N``; heads stay 8 (ComfyUI's value).
``StyleModel.get_cond(clip_vision_output)`` appends the style tokens to CLIP vision's last hidden state,
runs ``ln_pre``, the residual attention blocks (sequence-first MultiheadAttention + QuickGELU MLP), ``ln_post``
on the style tokens and ``@ proj``. ``apply_style`` is StyleModelApply's rule.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError, UnknownModelError
from engine.model_management import ModelManager, file_cache_key
from engine.state_files import read_state_dict

__all__ = ["StyleAdapter", "StyleModel", "load_style_model", "apply_style", "STYLE_HEADS"]

STYLE_HEADS = 8


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, width * 4)
        self.mlp.c_proj = nn.Linear(width * 4, width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


class StyleAdapter(nn.Module):
    """forward(clip last_hidden_state [N, T, width]) -> style tokens [N, num_token, context_dim]."""

    def __init__(self, width: int, context_dim: int, heads: int, layers: int, num_token: int) -> None:
        super().__init__()
        self.num_token = num_token
        self.transformer_layes = nn.Sequential(*(_Block(width, heads) for _ in range(layers)))
        self.style_embedding = nn.Parameter(torch.empty(1, num_token, width))
        self.ln_post = nn.LayerNorm(width)
        self.ln_pre = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, context_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        style = self.style_embedding + torch.zeros(x.shape[0], self.num_token, self.style_embedding.shape[-1],
                                                   device=x.device, dtype=x.dtype)
        x = self.ln_pre(torch.cat([x, style], dim=1)).permute(1, 0, 2)  # sequence-first, as CLIP's blocks
        x = self.transformer_layes(x).permute(1, 0, 2)
        return self.ln_post(x[:, -self.num_token:, :]) @ self.proj


class StyleModel:
    """STYLE_MODEL: a style adapter; ``get_cond(clip_vision_output)`` gives its tokens."""

    def __init__(self, model: StyleAdapter, name: str) -> None:
        self.model = model
        self.name = name

    @property
    def context_dim(self) -> int:
        return int(self.model.proj.shape[1])

    def get_cond(self, clip_vision_output: Any) -> torch.Tensor:
        with torch.no_grad():
            return self.model(clip_vision_output.last_hidden_state.float())


def _build(path: Path) -> StyleModel:
    sd, _ = read_state_dict(path)
    if "style_embedding" not in sd or "proj" not in sd:
        groups = sorted({k.split(".")[0] for k in sd})[:8]
        raise UnknownModelError(f"{path.name}: not a T2I style model (no style_embedding / proj; found "
                                f"{', '.join(groups)}). Flux Redux style models are not supported yet")
    _, tokens, width = sd["style_embedding"].shape
    layers = len({k.split(".")[1] for k in sd if k.startswith("transformer_layes.")})
    with torch.device("meta"):
        module = StyleAdapter(width, int(sd["proj"].shape[1]), STYLE_HEADS, layers, tokens)
    module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    return StyleModel(module.eval(), path.name)


def load_style_model(path: str | os.PathLike[str], manager: ModelManager) -> StyleModel:
    """Load (once per unchanged file) a style model from ``models/style_models``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"style model not found: {p}. Put it in models/style_models")
    return manager.cached(file_cache_key("style_model", p), lambda: _build(p))


def apply_style(conditioning: list[list[Any]], tokens: torch.Tensor, strength: float,
                strength_type: str) -> list[list[Any]]:
    """StyleModelApply: the style tokens (flattened to one row) appended to every entry's text tokens;
    ``multiply`` scales them, ``attn_bias`` adds log(strength) to the attention towards them through an
    ``attention_mask`` (which SD1.x / SDXL UNets ignore, as in ComfyUI)."""
    cond = tokens.flatten(start_dim=0, end_dim=1).unsqueeze(0)
    if strength_type == "multiply":
        cond = cond * strength
    n = cond.shape[1]
    out = []
    for txt, keys in conditioning:
        keys = dict(keys)
        if "attention_mask" in keys or (strength_type == "attn_bias" and strength != 1.0):
            bias = torch.log(torch.tensor([strength if strength_type == "attn_bias" else 1.0]))
            ref = keys.get("attention_mask_img_shape", (1, 1))
            n_ref, n_txt = ref[0] * ref[1], txt.shape[1]
            mask = keys.get("attention_mask")
            if mask is None:
                mask = torch.zeros((txt.shape[0], n_txt + n_ref, n_txt + n_ref), dtype=torch.float16)
            if mask.dtype == torch.bool:
                mask = torch.log(mask.to(dtype=torch.float16))
            new = torch.zeros((txt.shape[0], n_txt + n + n_ref, n_txt + n + n_ref), dtype=torch.float16)
            new[:, :n_txt, :n_txt] = mask[:, :n_txt, :n_txt]
            new[:, :n_txt, n_txt + n:] = mask[:, :n_txt, n_txt:]
            new[:, n_txt + n:, :n_txt] = mask[:, n_txt:, :n_txt]
            new[:, n_txt + n:, n_txt + n:] = mask[:, n_txt:, n_txt:]
            new[:, :n_txt, n_txt:n_txt + n] = bias
            new[:, n_txt + n:, n_txt:n_txt + n] = bias
            keys["attention_mask"] = new.to(txt.device)
            keys["attention_mask_img_shape"] = ref
        out.append([torch.cat((txt, cond.to(txt)), dim=1), keys])
    return out
