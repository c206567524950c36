"""The CLIP handle: one or more text towers (SD1 CLIP-L, SD2 OpenCLIP-H, SDXL CLIP-L + bigG) with their
tokenizers, the clip-skip setting and patches. Encodes prompts to ComfyUI CONDITIONING.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from engine.model_management import ManagedModel, ModelManager
from engine.patching import Patch, Patchable
from engine.tokenizer import PromptTokenizer, TokenWeight, TokenWordId

__all__ = ["ClipHandle", "ClipSchedule", "PatchSets", "TextEncoderSet", "TOWER_MODULES", "Tokens", "TowerTokenizers"]

# token key -> windows; a position is (token, weight) or, tokenized with word ids, (token, weight, word id)
Tokens = dict[str, Any]
Conditioning = list[list[Any]]
# patches with their strengths (a hook group's CLIP side, engine.hooks)
PatchSets = list[tuple[dict[str, Patch], float]]
# hook keyframe ranges (start, end percent) with the patch sets to encode each with
ClipSchedule = list[tuple[tuple[float, float], PatchSets]]

# token-dict key -> module name (ComfyUI's names, so LoRA keys like "clip_l.transformer..." match)
TOWER_MODULES = {"l": "clip_l", "g": "clip_g", "h": "clip_h", "t5xxl": "t5xxl"}


class TextEncoderSet(nn.ModuleDict):
    """The towers of one CLIP, by module name; forward(name, ...) runs one of them."""

    def forward(self, name: str, tokens: torch.Tensor, layer: int | None,
                injected: list[tuple[int, int, torch.Tensor]] | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self[name](tokens, layer, injected)  # type: ignore[no-any-return]


class CondStageModel:
    """ComfyUI's ``clip.cond_stage_model`` for one CLIP handle: the tower set (``keys()``, ``items()``, the towers as
    ``clip_l`` / ``clip_g`` / ... attributes, everything else of the ``TextEncoderSet``) plus ComfyUI's encoder API,
    run with this handle's clip-skip layer and patches: ``encode_token_weights(tokens)`` (every tower, as
    ``encode_from_tokens``), ``set_clip_options({"layer": i})`` / ``reset_clip_options()`` (the handle's layer), and
    per tower ``encode_token_weights(windows)`` (that tower alone: ComfyUI's token-weight rule, first window's pooled
    output). Advanced prompt encoders (ADV_CLIP_emb, Easy-Use, smZ) call these."""

    def __init__(self, clip: ClipHandle) -> None:
        self._clip = clip

    def keys(self) -> Any:
        return self._clip.encoders.keys()

    def __getattr__(self, name: str) -> Any:  # (only for names not set on the instance)
        clip: ClipHandle = self.__dict__["_clip"]
        key = next((k for k, module in TOWER_MODULES.items() if module == name), None)
        if key is not None and name in clip.encoders:
            return TowerEncoder(clip, key)
        return getattr(clip.encoders, name)

    def __getitem__(self, name: str) -> nn.Module:
        return self._clip.encoders[name]

    def __iter__(self) -> Any:
        return iter(self._clip.encoders)

    def __len__(self) -> int:
        return len(self._clip.encoders)

    def set_clip_options(self, options: dict[str, Any]) -> None:
        self._clip.layer_idx = options.get("layer", self._clip.layer_idx)

    def reset_clip_options(self) -> None:
        self._clip.layer_idx = None

    def encode_token_weights(self, token_weight_pairs: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        cond, pooled = self._clip.encode_from_tokens(token_weight_pairs, return_pooled=True)
        return cond, pooled


class TowerEncoder:
    """One tower of a CLIP as ComfyUI's ``SDClipModel``: ``encode_token_weights(windows) -> (cond, pooled)``; every
    other attribute is the tower module's (``tower``)."""

    def __init__(self, clip: ClipHandle, key: str) -> None:
        self._clip, self.key = clip, key
        self.tower = clip.encoders[TOWER_MODULES[key]]

    def __getattr__(self, name: str) -> Any:  # (only for names not set on the instance)
        return getattr(self.__dict__["tower"], name)

    def encode_token_weights(self, token_weight_pairs: list[list[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._clip._encode_tower(self.key, token_weight_pairs)


class TowerTokenizers:
    """A CLIP's tokenizers as ComfyUI's ``clip.tokenizer`` shows them: one attribute per tower (``clip_l``,
    ``clip_g``, ...) and ``tokenize_with_weights(text, return_word_ids)`` giving every tower's windows."""

    def __init__(self, tokenizers: dict[str, Any]) -> None:
        self.by_key = tokenizers

    def __getattr__(self, name: str) -> Any:
        for key, module in TOWER_MODULES.items():
            if module == name and key in self.__dict__.get("by_key", {}):
                return self.by_key[key]
        raise AttributeError(f"this CLIP has no {name!r} tokenizer (towers: "
                             f"{[TOWER_MODULES[k] for k in self.__dict__.get('by_key', {})]})")

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> Tokens:
        """Prompt -> {token key: windows} for every tower."""
        return {key: tok.tokenize_with_weights(text, return_word_ids) for key, tok in self.by_key.items()}


class ClipHandle(Patchable):
    """The CLIP: tokenizers + text towers + clip-skip layer. encode -> [[cond, {"pooled_output": pooled}]].

    Parameters: encoders: TextEncoderSet (``clip_l`` / ``clip_g`` / ``clip_h``); tokenizers: token key
    ("l", "g", "h") -> PromptTokenizer; pooled_from: token key whose pooled output is the pooled_output.
    Several towers are concatenated along channels in token-key order ``l`` then ``g`` (SDXL).
    """

    _prefixes = ("clip.", "cond_stage_model.")

    def __init__(self, encoders: TextEncoderSet, tokenizers: dict[str, PromptTokenizer], manager: ModelManager,
                 entry: ManagedModel | None = None, embedding_directory: str | None = None,
                 pooled_from: str | None = None) -> None:
        super().__init__()
        self.encoders = encoders
        self.tokenizers = tokenizers
        self.manager = manager
        self.entry = entry if entry is not None else manager.register(encoders, "clip", "clip")
        self.embedding_directory = embedding_directory
        self.pooled_from = pooled_from or ("g" if "g" in tokenizers else next(iter(tokenizers)))
        self.layer_idx: int | None = None
        # SetClipHooks (engine.hooks.set_clip_hooks): the hook group put on every encoded cond as "hooks", the
        # hooks' patches (kept apart from `patches`, so another SetClipHooks replaces them) and, with
        # schedule_clip, the keyframe ranges encode_from_tokens_scheduled encodes once each
        self.cond_hooks: Any = None
        self.hook_patches: PatchSets = []
        self.clip_schedule: ClipSchedule | None = None

    def _module(self) -> nn.Module:
        return self.encoders

    @property
    def patcher(self) -> ClipHandle:
        """ComfyUI's ``clip.patcher`` (the towers' ModelPatcher): this handle, which patches its own weights."""
        return self

    @patcher.setter
    def patcher(self, value: Patchable) -> None:
        """A pack's ``clip.patcher = ItsPatcher.clone(clip.patcher)`` (ComfyUI-GGUF): the clone's patches and
        options become this CLIP's; the towers are unchanged."""
        if value is self:
            return
        if not isinstance(value, Patchable):
            raise TypeError(f"clip.patcher: expected a patcher cloned from this CLIP's, got {type(value).__name__}")
        value._copy_patcher_state_to(self)

    @property
    def load_device(self) -> torch.device:
        """Where the towers run."""
        return self.manager.policy.device_for("clip")

    @property
    def tokenizer(self) -> TowerTokenizers:
        """ComfyUI's ``clip.tokenizer``: the towers' tokenizers as attributes (``clip.tokenizer.clip_l``)."""
        return TowerTokenizers(self.tokenizers)

    @property
    def cond_stage_model(self) -> CondStageModel:
        """ComfyUI's ``clip.cond_stage_model``: this CLIP's towers with ComfyUI's encoder API (``CondStageModel``;
        ``comfy.sd1_clip`` / ``comfy.sdxl_clip`` classes answer ``isinstance`` checks on it from its tower names)."""
        return CondStageModel(self)

    @property
    def encoder(self) -> nn.Module:
        """The only tower when there is one (SD1, SD2), else the tower set."""
        return next(iter(self.encoders.values())) if len(self.encoders) == 1 else self.encoders

    def clone(self) -> ClipHandle:
        """A handle sharing the towers, with its own layer setting and patches."""
        other = copy.copy(self)
        self._copy_patcher_state_to(other)
        return other

    def set_clip_skip(self, layer: int) -> None:
        """CLIPSetLastLayer: -1 = last layer, -2 = penultimate, ... (in place; clone first)."""
        if layer >= 0:
            raise ValueError(f"CLIPSetLastLayer: stop_at_clip_layer must be negative (-1 = last), got {layer}")
        self.layer_idx = layer

    clip_layer = set_clip_skip

    def reset_clip_skip(self) -> None:
        """Back to each tower's default layer."""
        self.layer_idx = None

    def tokenize(self, text: str, return_word_ids: bool = False) -> Tokens:
        """Prompt -> {key: windows of (token, weight)} for every tower (ComfyUI's token layout); with
        ``return_word_ids`` (token, weight, word id) triples, which ``encode_from_tokens`` also takes."""
        return self.tokenizer.tokenize_with_weights(text, return_word_ids)

    def _run(self, key: str, windows: list[list[TokenWeight | TokenWordId]]) -> tuple[torch.Tensor, torch.Tensor]:
        module = self.manager.load(self.entry)
        device = self.manager.policy.device
        # embedding vectors (textual inversion) ride on a placeholder id and replace its embedding
        injected = [(r, c, p[0]) for r, w in enumerate(windows) for c, p in enumerate(w)
                    if isinstance(p[0], torch.Tensor)]
        ids = torch.tensor([[0 if isinstance(p[0], torch.Tensor) else int(p[0]) for p in w] for w in windows],
                           dtype=torch.long, device=device)
        args = (TOWER_MODULES[key], ids, self.layer_idx, injected or None)
        patched = self._patched_weights(module)
        with torch.no_grad():
            if patched:
                hidden, pooled = torch.func.functional_call(module, patched, args, strict=False)
            else:
                hidden, pooled = module(*args)
        return hidden.float().cpu(), pooled.float().cpu()

    def _encode_tower(self, key: str, windows: list[list[TokenWeight | TokenWordId]]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """ComfyUI's token-weight rule for one tower: z = (z - z_empty) * w + z_empty per token."""
        has_weights = any(p[1] != 1.0 for window in windows for p in window)
        empty: list[TokenWeight | TokenWordId] = [(t, 1.0) for t in self.tokenizers[key].empty_tokens()]
        batch = list(windows) + ([empty] if has_weights or not windows else [])
        hidden, pooled = self.manager.run_oom_safe(lambda: self._run(key, batch))
        parts = []
        for k, window in enumerate(windows):
            z = hidden[k].clone()
            if has_weights:
                z_empty = hidden[-1]
                for j, position in enumerate(window):
                    w = position[1]
                    if w != 1.0:
                        z[j] = (z[j] - z_empty[j]) * w + z_empty[j]
            parts.append(z)
        cond = torch.cat(parts, dim=0)[None] if parts else hidden[-1:]
        return cond, pooled[0:1]

    def with_hook_patches(self, patch_sets: PatchSets) -> ClipHandle:
        """A clone with ``patch_sets`` added to its own patches, and no hooks of its own."""
        clip = self.clone()
        clip.hook_patches, clip.clip_schedule = [], None
        for patches, strength in patch_sets:
            clip.add_patches(patches, strength)
        return clip

    def encode_from_tokens(self, tokens: Tokens, return_pooled: bool = False
                           ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode token windows of every tower; several towers are concatenated along channels."""
        if self.hook_patches:
            return self.with_hook_patches(self.hook_patches).encode_from_tokens(tokens, return_pooled)
        missing = [k for k in self.tokenizers if k not in tokens]
        if missing:
            raise ValueError(f"CLIP encode: tokens lack {missing} (this CLIP has towers "
                             f"{list(self.tokenizers)}); tokenize with this CLIP's tokenize()")
        outs = {key: self._encode_tower(key, tokens[key]) for key in self.tokenizers}
        if len(outs) == 1:
            cond = next(iter(outs.values()))[0]
        else:
            conds = [outs[k][0] for k in ("l", "g", "h") if k in outs]
            cut = min(c.shape[1] for c in conds)
            cond = torch.cat([c[:, :cut] for c in conds], dim=-1)
        pooled = outs[self.pooled_from][1]
        return (cond, pooled) if return_pooled else cond

    def encode_from_tokens_scheduled(self, tokens: Tokens, add_dict: dict[str, Any] | None = None
                                     ) -> Conditioning:
        """CLIPTextEncode's output: [[cond, {"pooled_output": pooled, **add_dict}]], plus ``"hooks"`` when hooks
        are set to go on conds; with a hook schedule, one entry per keyframe range that overlaps the add_dict's
        start / end percent, each with ``clip_start_percent`` / ``clip_end_percent``."""
        add = dict(add_dict or {})
        hooks = {} if self.cond_hooks is None else {"hooks": self.cond_hooks}
        if self.clip_schedule is None:
            cond, pooled = self.encode_from_tokens(tokens, return_pooled=True)
            return [[cond, {"pooled_output": pooled, **hooks, **add}]]
        out: Conditioning = []
        for (start, end), patch_sets in self.clip_schedule:
            if ("start_percent" in add and end < add["start_percent"]) or (
                    "end_percent" in add and start > add["end_percent"]):
                continue
            cond, pooled = self.with_hook_patches(patch_sets).encode_from_tokens(tokens, return_pooled=True)
            out.append([cond, {"pooled_output": pooled, "clip_start_percent": start, "clip_end_percent": end,
                               **add, **hooks}])
        return out

    def encode(self, text: str) -> Conditioning:
        """Tokenize and encode a prompt to CONDITIONING."""
        return self.encode_from_tokens_scheduled(self.tokenize(text))
