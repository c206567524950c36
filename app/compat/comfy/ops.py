"""ComfyUI's `comfy.ops` for packs: the layer sets networks are built with, over Loom's `engine.networks.ops`.

`disable_weight_init` is Loom's `Plain` set (ordinary torch layers); layer kinds Loom's networks do not use
(Conv1d, Conv3d, ConvTranspose2d, Embedding) are torch's own. `manual_cast` keeps ComfyUI's layer contract,
which packs subclass (GGUF's quantised layers): each layer has `comfy_cast_weights` (True), `weight_function` /
`bias_function` lists, and `forward` calls `forward_comfy_cast_weights(input)` when any of them is set, which
runs Loom's `ManualCast` layer (weights cast to the input's dtype and device on each call). `cast_to` and
`cast_bias_weight` are ComfyUI's helpers. ComfyUI's own quantised and fp8 operation sets are not provided.

While this module is loaded, LoRAs and merges on a pack layer's packed weights (GGUF's quantised layers) are
applied to the float32 value the layer's own `cast_bias_weight` gives (engine.patching's unpacker hook).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from app.compat._environment import shim_still_loaded
from engine.networks.ops import ManualCast, Plain
from engine.patching import add_weight_unpacker

__all__ = ["CastWeightBiasOp", "cast_bias_weight", "cast_to", "disable_weight_init", "manual_cast"]


class disable_weight_init:  # noqa: N801 (ComfyUI's name)
    """Plain torch layers (Loom's `Plain`)."""

    Linear = Plain.Linear
    Conv2d = Plain.Conv2d
    GroupNorm: type[nn.GroupNorm] = Plain.GroupNorm  # ComfyUI's contract below (packs patch its cast forward)
    LayerNorm = Plain.LayerNorm
    Conv1d = nn.Conv1d
    Conv3d = nn.Conv3d
    ConvTranspose2d = nn.ConvTranspose2d
    Embedding = nn.Embedding

    @classmethod
    def conv_nd(cls, dims: int, *args: Any, **kwargs: Any) -> nn.Module:
        """A 2-d or 3-d convolution of this set."""
        if dims == 2:
            return cls.Conv2d(*args, **kwargs)
        if dims == 3:
            return cls.Conv3d(*args, **kwargs)
        raise ValueError(f"comfy.ops.conv_nd: unsupported dimensions {dims} (2 or 3)")


class CastWeightBiasOp:
    """ComfyUI's layer contract (mixed in before a torch layer): `forward` goes through
    `forward_comfy_cast_weights` while `comfy_cast_weights` is set or a weight / bias function is."""

    comfy_cast_weights = True
    weight_function: list[Any] = []
    bias_function: list[Any] = []

    def forward_comfy_cast_weights(self, *args: Any, **kwargs: Any) -> Any:
        return self._cast_forward(*args, **kwargs)  # type: ignore[attr-defined]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.comfy_cast_weights or self.weight_function or self.bias_function:
            return self.forward_comfy_cast_weights(*args, **kwargs)
        return super().forward(*args, **kwargs)  # type: ignore[misc]


def _embedding_forward(self: nn.Embedding, input: torch.Tensor, out_dtype: Any = None) -> torch.Tensor:
    weight = self.weight.to(device=input.device)
    out = F.embedding(input, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                      self.sparse)
    return out if out_dtype is None else out.to(out_dtype)


class _PlainGroupNorm(CastWeightBiasOp, nn.GroupNorm):
    """torch's GroupNorm with ComfyUI's layer contract, casting only while a pack asks it to (``comfy_cast_weights``
    False): AnimateDiff-Evolved swaps ``disable_weight_init.GroupNorm.forward_comfy_cast_weights`` (and torch's
    ``GroupNorm.forward``, which this one calls) for its frame-batched group norm during a sampling."""

    comfy_cast_weights = False
    _cast_forward = ManualCast.GroupNorm.forward


disable_weight_init.GroupNorm = _PlainGroupNorm


class manual_cast(disable_weight_init):  # noqa: N801 (ComfyUI's name)
    """Layers whose weights follow the input's dtype and device (Loom's `ManualCast`), with ComfyUI's contract."""

    class Linear(CastWeightBiasOp, ManualCast.Linear):
        _cast_forward = ManualCast.Linear.forward

    class Conv2d(CastWeightBiasOp, ManualCast.Conv2d):
        _cast_forward = ManualCast.Conv2d.forward

    class GroupNorm(CastWeightBiasOp, ManualCast.GroupNorm):
        _cast_forward = ManualCast.GroupNorm.forward

    class LayerNorm(CastWeightBiasOp, ManualCast.LayerNorm):
        _cast_forward = ManualCast.LayerNorm.forward

    class Embedding(CastWeightBiasOp, nn.Embedding):
        _cast_forward = _embedding_forward

        def reset_parameters(self) -> None:
            """ComfyUI's: no random init (the file's table replaces it), and ``bias`` None for the layer contract."""
            self.bias = None


def cast_to(weight: torch.Tensor, dtype: Any = None, device: Any = None, non_blocking: bool = False,
            copy: bool = False, stream: Any = None) -> torch.Tensor:
    """`weight` on `device` in `dtype` (either None: unchanged); a copy only when asked or needed."""
    if (device is None or weight.device == torch.device(device)) and (dtype is None or weight.dtype == dtype):
        return weight.clone() if copy else weight
    return weight.to(device=device, dtype=dtype, non_blocking=non_blocking, copy=copy)


def cast_bias_weight(s: nn.Module, input: torch.Tensor | None = None, dtype: Any = None, device: Any = None,
                     bias_dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(weight, bias)` of layer `s` cast to `input`'s dtype / device (or the ones given)."""
    dtype = dtype if dtype is not None else (input.dtype if input is not None else None)
    device = device if device is not None else (input.device if input is not None else None)
    weight = cast(torch.Tensor, s.weight).to(device=device, dtype=dtype)
    raw_bias = getattr(s, "bias", None)
    bias = cast(torch.Tensor, raw_bias).to(device=device, dtype=bias_dtype or dtype) if raw_bias is not None else None
    return weight, bias


def _unpack_with_layer(layer: nn.Module, attr: str) -> Callable[[], torch.Tensor] | None:
    """engine.patching's unpacker for layers with ComfyUI's contract: the float32 weight / bias their own
    `cast_bias_weight` gives (a pack's quantised layer dequantises it)."""
    if not shim_still_loaded(__name__, _THIS_MODULE, _remove_unpacker):
        return None
    cast_fn = getattr(layer, "cast_bias_weight", None)
    if not isinstance(layer, CastWeightBiasOp) or attr not in ("weight", "bias") or not callable(cast_fn):
        return None
    index = 0 if attr == "weight" else 1

    def unpack() -> torch.Tensor:
        device = getattr(layer, attr).device
        value: torch.Tensor = cast_fn(None, dtype=torch.float32, device=device)[index]
        return value
    return unpack


_THIS_MODULE = sys.modules[__name__]
_remove_unpacker = add_weight_unpacker(_unpack_with_layer)
