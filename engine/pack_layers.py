"""Networks made of a pack's own layer set (ComfyUI's ``model_options["custom_operations"]``).

A pack such as ComfyUI-GGUF hands the loader a class with ``Linear``, ``Conv2d``, ``Embedding``, ``LayerNorm`` and
``GroupNorm`` layers that read their own tensors (quantised weights kept packed and unpacked per call). Loom's
UNet-family networks take such a set at construction; the text towers are built as usual on the meta device and
then have their torch layers replaced (``swap_layers``). Either way the tensors go in through torch's state-dict
loader (``adopt``), so each pack layer's own ``_load_from_state_dict`` runs.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.patching import is_packed

__all__ = ["swap_layers", "adopt"]


def _arguments(layer: nn.Module) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
    """(layer kind, constructor arguments) that rebuild ``layer``; None for a layer of no such kind."""
    if isinstance(layer, nn.Linear):
        return "Linear", (layer.in_features, layer.out_features), {"bias": layer.bias is not None}
    if isinstance(layer, nn.Conv2d):
        return "Conv2d", (layer.in_channels, layer.out_channels, layer.kernel_size), {
            "stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups,
            "bias": layer.bias is not None, "padding_mode": layer.padding_mode}
    if isinstance(layer, nn.Embedding):
        return "Embedding", (layer.num_embeddings, layer.embedding_dim), {"padding_idx": layer.padding_idx}
    if isinstance(layer, nn.LayerNorm):
        return "LayerNorm", (layer.normalized_shape,), {"eps": layer.eps,
                                                        "elementwise_affine": layer.elementwise_affine}
    if isinstance(layer, nn.GroupNorm):
        return "GroupNorm", (layer.num_groups, layer.num_channels), {"eps": layer.eps, "affine": layer.affine}
    return None


def _replacement(layer: nn.Module, operations: Any) -> nn.Module | None:
    """``layer`` rebuilt on the meta device from ``operations`` with the same hyper-parameters; None when the
    set has no layer of its kind (or it already is one)."""
    found = _arguments(layer)
    custom = None if found is None else getattr(operations, found[0], None)
    if found is None or custom is None or isinstance(layer, custom):
        return None
    new: nn.Module = custom(*found[1], device="meta", **found[2])
    return new


_FLOAT32_OUT: dict[type, type] = {}


def _float32_out(cls: type[nn.Module]) -> type[nn.Module]:
    """``cls`` (an embedding with ComfyUI's ``out_dtype`` argument) answering in float32 unless asked otherwise:
    ComfyUI's text towers ask their embeddings for float32, so the layers after them, which cast their weights to
    the input, compute in float32 whatever the tables are stored in."""
    sub = _FLOAT32_OUT.get(cls)
    if sub is None:
        def forward(self: nn.Module, input: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
            out: torch.Tensor = cls.forward(self, input, out_dtype=out_dtype or torch.float32)
            return out

        sub = _FLOAT32_OUT[cls] = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                                               "__qualname__": cls.__qualname__})
    return sub


def swap_layers(module: nn.Module, operations: Any) -> nn.Module:
    """Replace, in place, each torch ``Linear`` / ``Conv2d`` / ``Embedding`` / ``LayerNorm`` / ``GroupNorm`` of a
    text tower built on the meta device by the same layer from ``operations`` (embeddings answering in float32,
    as ComfyUI's towers ask theirs to); returns ``module``."""
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            new = None if child is None else _replacement(child, operations)
            if isinstance(new, nn.Embedding):
                new.__class__ = _float32_out(type(new))  # type: ignore[assignment]
            if new is not None:
                parent._modules[name] = new
    return module


def adopt(module: nn.Module, sd: Mapping[str, torch.Tensor], what: str, source: Path | str) -> None:
    """Give a module with pack layers its tensors through torch's loader, in eval mode without grad.

    Tensors for Loom's own parts (norms outside the pack's set, for instance) are taken as plain tensors; a
    packed one there (nothing could unpack it) is refused, as is a parameter left without a tensor."""
    name = Path(source).name
    own: set[str] = set()
    for prefix, m in module.named_modules(remove_duplicate=False):
        if not hasattr(m, "comfy_cast_weights"):  # not a pack layer (those follow ComfyUI's layer contract)
            dot = prefix + "." if prefix else ""
            own.update(dot + key for key in (*m._parameters, *m._buffers))
    tensors: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key in own and type(value) is not torch.Tensor:
            if is_packed(value):
                raise CheckpointError(f"{name}: {key} is stored packed ({type(value).__name__}) for a part of the "
                                      f"{what} that the custom layers do not cover")
            value = value.as_subclass(torch.Tensor)
        tensors[key] = value
    module.load_state_dict(tensors, strict=False, assign=True)
    missing = [k for k, t in [*module.named_parameters(), *module.named_buffers()] if t is None or t.is_meta]
    if missing:
        raise CheckpointError(f"{name}: the {what} has no tensors for {len(missing)} of its parameters with these "
                              f"layers, such as {missing[:3]}")
    module.eval()
    module.requires_grad_(False)

