"""Text encoders of the flow families: Flux (CLIP-L pooled + T5-XXL context) and SD3.x (CLIP-L + CLIP-G + T5-XXL,
any subset of them as ComfyUI allows: CLIPLoader / DualCLIPLoader type sd3).

Files are classified by content, as ComfyUI does: a T5 encoder by ``relative_attention_bias``; an HF-named CLIP
with ``text_model.encoder.layers.30.*`` is CLIP-G, otherwise CLIP-L. CLIP heads come from a JSON config in the
file's metadata (``num_attention_heads``) when present, else from the family's standard value (heads of width 16 for
a reduced test tower the standard cannot divide).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from engine.clip_handle import ClipHandle, TextEncoderSet, Tokens
from engine.detect import clip_heads, detect_clip_l
from engine.errors import UnknownModelError
from engine.families import FLUX_DEV, SD35, Family, TextEncoderSpec
from engine.model_management import ModelManager
from engine.t5 import T5PromptTokenizer, T5TextEncoder, detect_t5, is_t5
from engine.tokenizer import PromptTokenizer

__all__ = ["FlowClipHandle", "build_flow_clip", "tower_kind", "FLOW_CLIP_TYPES"]

FLOW_CLIP_TYPES: dict[str, tuple[Family, tuple[str, ...]]] = {"flux": (FLUX_DEV, ("l", "t5xxl")),
                                                               "sd3": (SD35, ("l", "g", "t5xxl"))}
TOWER_NAMES = {"l": "clip_l", "g": "clip_g", "t5xxl": "t5xxl"}
_T5_MIN_LENGTH = {"flux": 256, "sd3": 77}
# head width of reduced test towers (the tiny fixtures: width 32, 2 heads): used when no config names the heads and
# the family standard cannot divide the width, as in an all-in-one test checkpoint whose metadata has no tower config
_REDUCED_HEAD_WIDTH = 16
# ComfyUI's widths for the towers an SD3 CLIP was loaded without (CLIP-L 768, CLIP-G 1280, T5-XXL 4096)
SD3_WIDTHS = {"l": 768, "g": 1280, "t5xxl": 4096}


def tower_kind(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """"t5xxl", "g", "l" or None (not a text encoder these families use)."""
    if is_t5(shapes):
        return "t5xxl"
    if "text_model.embeddings.token_embedding.weight" in shapes:
        return "g" if "text_model.encoder.layers.30.mlp.fc1.weight" in shapes else "l"
    return None


def _configured_heads(metadata: Mapping[str, str] | None, tower: str) -> int | None:
    """Heads from a JSON config in the metadata: top-level (a text-encoder file) or under
    ``text_encoders.<tower>`` (an all-in-one checkpoint)."""
    for value in (metadata or {}).values():
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            continue
        if not isinstance(parsed, dict):
            continue
        nested = parsed.get("text_encoders", {}).get(tower) if isinstance(parsed.get("text_encoders"), dict) else None
        for cfg in (parsed, nested):
            if isinstance(cfg, dict) and "num_attention_heads" in cfg:
                return int(cfg["num_attention_heads"])
    return None


class FlowClipHandle(ClipHandle):
    """The CLIP of a flow family.

    ``kind`` "flux": cond = T5 last layer, pooled = CLIP-L final-LN EOS token (not projected).
    ``kind`` "sd3": cond = [pad(concat(CLIP-L, CLIP-G penultimate, channels), T5 width), T5 last layer] over
    tokens; pooled = concat(CLIP-L pooled (not projected), CLIP-G projected pooled).
    """

    def __init__(self, kind: str, *args: Any, g_projection: torch.Tensor | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.g_projection = g_projection

    def encode_from_tokens(self, tokens: Tokens, return_pooled: bool = False
                           ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        missing = [k for k in self.tokenizers if k not in tokens]
        if missing:
            raise ValueError(f"CLIP encode: tokens lack {missing} (this {self.kind} CLIP has towers "
                             f"{list(self.tokenizers)}); tokenize with this CLIP's tokenize()")
        if self.kind == "flux":
            t5, _ = self._encode_tower("t5xxl", self._t5_windows(tokens))
            _, l_pooled = self._encode_tower("l", tokens["l"])
            return (t5, l_pooled) if return_pooled else t5
        cond, pooled = self._encode_sd3(tokens)
        return (cond, pooled) if return_pooled else cond

    def _t5_windows(self, tokens: Tokens) -> list[list[Any]]:
        # an empty token list (CLIPTextEncodeSD3 empty_padding "none"): T5 encodes the end token alone
        return tokens["t5xxl"] or [[(self.tokenizers["t5xxl"].end_token, 1.0)]]

    def width(self, key: str) -> int:
        """A tower's output width (CLIP-G: its projected pooled width), SD3's standard one when it is absent."""
        module = TOWER_NAMES[key]
        if module not in self.encoders:
            return SD3_WIDTHS[key]
        if key == "g":
            assert self.g_projection is not None
            return int(self.g_projection.shape[0])
        encoder: Any = self.encoders[module]
        return int(encoder.transformer.config.d_model if key == "t5xxl" else encoder.config.hidden_size)

    def _has(self, key: str) -> bool:
        return TOWER_NAMES[key] in self.encoders

    def _encode_sd3(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """ComfyUI's SD3 rule, absent towers included: the CLIP part is [L | G] padded to the T5 width (an absent
        tower's block is zeros), followed by the T5 tokens when T5 is present; the pooled vector is
        [L pooled | G projected pooled] with zeros for an absent tower."""
        width = self.width("t5xxl")
        lg: torch.Tensor | None = None
        pooled: torch.Tensor | None = None
        if tokens["l"] or tokens["g"]:
            l_pooled = torch.zeros(1, self.width("l"))
            if self._has("l"):
                lg, l_pooled = self._encode_tower("l", tokens["l"])
            g_pooled = torch.zeros(1, self.width("g"))
            if self._has("g"):
                assert self.g_projection is not None
                g_hidden, g_raw = self._encode_tower("g", tokens["g"])
                g_pooled = g_raw @ self.g_projection.float().T
                if lg is None:
                    lg = torch.nn.functional.pad(g_hidden, (self.width("l"), 0))
                else:
                    cut = min(lg.shape[1], g_hidden.shape[1])
                    lg = torch.cat([lg[:, :cut], g_hidden[:, :cut]], dim=-1)
            if lg is not None:
                if lg.shape[-1] > width:
                    raise ValueError(f"SD3 CLIP: the CLIP-L + CLIP-G context is {lg.shape[-1]} wide, more than the "
                                     f"T5 width {width}; these text encoders do not belong together")
                lg = torch.nn.functional.pad(lg, (0, width - lg.shape[-1]))
            pooled = torch.cat([l_pooled, g_pooled], dim=-1)
        cond = lg
        if self._has("t5xxl"):
            t5, _ = self._encode_tower("t5xxl", self._t5_windows(tokens))
            cond = t5 if lg is None else torch.cat([lg, t5], dim=-2)
        if cond is None:
            cond = torch.zeros(1, 77, width)
        if pooled is None:
            pooled = torch.zeros(1, self.width("l") + self.width("g"))
        return cond, pooled


def _clip_tower(spec: TextEncoderSpec, sd: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None,
                source: str, dtype: torch.dtype, build_tower: Any, path: Path) -> tuple[Any, int]:
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    width = int(shapes["text_model.embeddings.token_embedding.weight"][1])
    configured = _configured_heads(metadata, TOWER_NAMES[spec.key])
    if configured is None and width % spec.default_heads and width % _REDUCED_HEAD_WIDTH == 0:
        configured = width // _REDUCED_HEAD_WIDTH
    heads = clip_heads(width, configured, spec.default_heads, source)
    cfg = detect_clip_l(shapes, "text_model.", heads)
    if spec.key == "g":  # bigG: exact gelu
        cfg = replace(cfg, hidden_act="gelu")
    weights = {"transformer." + k: v for k, v in sd.items() if k.startswith("text_model.")
               and not k.endswith("position_ids")}
    return build_tower(spec, cfg, weights, dtype, path), width


def build_flow_clip(clip_type: str, files: Sequence[tuple[Path, Mapping[str, torch.Tensor], Mapping[str, str]]],
                    manager: ModelManager, build_tower: Any, operations: Any = None) -> FlowClipHandle:
    """A flow family's CLIP from (path, tensors, metadata) of its text-encoder files (any order);
    ``build_tower`` is engine.loading's CLIP tower builder; ``operations``: a pack's layer set for T5."""
    family, keys = FLOW_CLIP_TYPES[clip_type]
    by_kind: dict[str, tuple[Path, Mapping[str, torch.Tensor], Mapping[str, str]]] = {}
    for path, sd, meta in files:
        kind = tower_kind({k: tuple(v.shape) for k, v in sd.items()})
        if kind is None or kind not in keys:
            raise UnknownModelError(f"{path.name}: not a text encoder of a {clip_type} CLIP (expected "
                                    f"{' + '.join(TOWER_NAMES[k] for k in keys)})")
        if kind in by_kind:
            raise UnknownModelError(f"{path.name} and {by_kind[kind][0].name} are both {TOWER_NAMES[kind]}; "
                                    f"a {clip_type} CLIP needs {' + '.join(TOWER_NAMES[k] for k in keys)}")
        by_kind[kind] = (path, sd, meta)
    absent = [TOWER_NAMES[k] for k in keys if k not in by_kind]
    # SD3 runs with any of its towers (ComfyUI: zeros stand in for an absent CLIP, no T5 tokens without T5)
    if absent and (clip_type != "sd3" or not by_kind):
        raise UnknownModelError(f"a {clip_type} CLIP needs {' + '.join(TOWER_NAMES[k] for k in keys)}; "
                                f"missing {', '.join(absent)}")
    towers = TextEncoderSet()
    tokenizers: dict[str, Any] = {}
    g_projection = None
    specs: dict[str, TextEncoderSpec] = {s.key: s for s in family.text_encoders}
    for key in keys:
        # every tokenizer, also for an absent tower: prompts tokenize alike whichever files were loaded
        tokenizers[key] = (T5PromptTokenizer(min_length=_T5_MIN_LENGTH[clip_type]) if key == "t5xxl"
                           else PromptTokenizer(pad_token=specs[key].pad_token))
        if key not in by_kind:
            continue
        path, sd, meta = by_kind[key]
        if key == "t5xxl":
            t5 = T5TextEncoder(detect_t5({k: tuple(v.shape) for k, v in sd.items()}, "", path.name))
            t5.adopt(sd, path.name, operations)
            towers[TOWER_NAMES[key]] = t5
        else:
            spec = specs[key]
            towers[TOWER_NAMES[key]], _ = _clip_tower(spec, sd, meta, path.name, manager.policy.text_dtype,
                                                      build_tower, path)
            if key == "g":
                if "text_projection.weight" not in sd:
                    raise UnknownModelError(f"{path.name}: the CLIP-G file has no text_projection.weight")
                g_projection = sd["text_projection.weight"].float()
    entry = manager.register(towers, f"{'+'.join(p.name for p, _, _ in by_kind.values())} (clip)", "clip")
    return FlowClipHandle(clip_type, towers, tokenizers, manager, entry, None, pooled_from="l",
                          g_projection=g_projection)
