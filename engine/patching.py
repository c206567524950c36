"""Weight patches (LoRA and friends) kept beside a shared network and applied at run time.

A patch is a weight delta (same shape as the weight) or a function weight(fp32) -> delta. Patched weights
are computed in float32 on the network's current device, cached per handle, and passed to the network
through ``torch.func.functional_call``; the shared base weights are never modified.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Union

import torch
from torch import nn

__all__ = ["Patch", "Patchable"]

Patch = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


class Patchable:
    """Patch bookkeeping shared by the MODEL and CLIP handles."""

    _prefixes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.patches: dict[str, list[tuple[float, Patch, float]]] = {}
        self._patched: dict[str, torch.Tensor] | None = None

    def _module(self) -> nn.Module:
        raise NotImplementedError

    def _normalise_key(self, key: str, names: set[str]) -> str | None:
        for prefix in ("", *self._prefixes):
            if key.startswith(prefix) and key[len(prefix):] in names:
                return key[len(prefix):]
        return None

    def add_patches(self, patches: dict[str, Patch], strength_patch: float = 1.0,
                    strength_model: float = 1.0) -> list[str]:
        """Record patches (applied when the handle runs); returns the keys that matched a weight."""
        names = {n for n, _ in self._module().named_parameters()}
        added = []
        for key, patch in patches.items():
            name = self._normalise_key(key, names)
            if name is None:
                continue
            self.patches.setdefault(name, []).append((strength_patch, patch, strength_model))
            added.append(key)
        self._patched = None
        return added

    def _patched_weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        if not self.patches:
            return {}
        if self._patched is not None:
            first = next(iter(self._patched.values()))
            if first.device == next(module.parameters()).device:
                return self._patched
        params = dict(module.named_parameters())
        out: dict[str, torch.Tensor] = {}
        for name, entries in self.patches.items():
            base = params[name]
            w = base.detach().float()
            for strength, patch, strength_model in entries:
                if strength_model != 1.0:
                    w = w * strength_model
                delta = patch(w) if callable(patch) else patch.to(device=w.device, dtype=torch.float32)
                w = w + strength * delta.reshape(w.shape)
            out[name] = w.to(base.dtype)
        self._patched = out
        return out

    def patch_signature(self) -> tuple[tuple[str, float, int, float], ...]:
        """Identity of the recorded patches (for caches of things derived from the patched weights)."""
        return tuple((name, strength, id(patch), strength_model)
                     for name, entries in sorted(self.patches.items()) for strength, patch, strength_model in entries)

    def patched_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights and buffers as the handle runs them: patches applied (ComfyUI's
        ``ModelPatcher.model_state_dict()`` of a loaded, patched model)."""
        module = self._module()
        out = {k: v.detach() for k, v in module.state_dict().items()}
        out.update(self._patched_weights(module))
        return out

    def _copy_patches_to(self, other: Patchable) -> None:
        other.patches = {k: list(v) for k, v in self.patches.items()}
        other._patched = None
