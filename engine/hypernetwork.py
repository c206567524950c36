"""AUTOMATIC1111 hypernetworks: small MLPs that rewrite the key and value inputs of the UNet's attentions.

A ``.pt`` file (``torch.save`` of a dict, read with ``torch.load(weights_only=True)``) maps an attention input
width ``d`` to ``[k_module_state, v_module_state]`` and carries ``activation_func``, ``is_layer_norm``,
``use_dropout``, ``activate_output``, ``last_layer_dropout``. Each module is rebuilt as ComfyUI does
(``comfy_extras/nodes_hypernetwork.py``): the state's ``*.weight`` names in file order are Linear layers, each
followed by the activation unless it is the last layer and ``activate_output`` is off, and, with layer norm on, by
the next name as a LayerNorm, which consumes that name, so the last Linear is also followed by the activation.
``swish`` is ``torch.nn.Hardswish``. Dropout (training only) is left out: inference uses none.

The patch runs as an ``attn1_patch`` and ``attn2_patch`` (``engine.networks.attention.patched_block_forward``):
where the key input is ``d`` wide, ``key += strength * hn_k(key)`` and ``value += strength * hn_v(value)``.
"""
from __future__ import annotations

import copy
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["ACTIVATIONS", "HypernetworkPatch", "build_hypernetwork", "load_hypernetwork", "read_hypernetwork"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "linear": nn.Identity, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU, "swish": nn.Hardswish,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softsign": nn.Softsign, "mish": nn.Mish,
}
_PICKLES = (".pt", ".pth", ".ckpt", ".bin")


def read_hypernetwork(path: str | os.PathLike[str]) -> dict[Any, Any]:
    """The dict saved in an A1111 hypernetwork file (weights-only unpickling; code-running pickles refused)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"hypernetwork file not found: {p}. Put it in models/hypernetworks")
    if p.suffix.lower() not in _PICKLES:
        raise CheckpointError(f"{p.name}: hypernetworks are AUTOMATIC1111 .pt files (torch.save of a dict); "
                              f"got {p.suffix!r}")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"refused to load {p.name}: the pickle needs to run code to load "
                                    "(weights_only=True rejected it)") from exc
    except (EOFError, zipfile.BadZipFile, RuntimeError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {p.name}: corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p.name}: expected a dict (A1111 hypernetwork), found {type(obj).__name__}")
    return dict(obj)


def _width(key: Any) -> int | None:
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def _module(state: Mapping[str, torch.Tensor], activation: str, layer_norm: bool, activate_output: bool,
            where: str) -> nn.Sequential:
    names = [k[: -len(".weight")] for k in state if k.endswith(".weight")]
    layers: list[nn.Module] = []
    i = 0
    while i < len(names):
        last = i == len(names) - 1
        try:
            w, b = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
        except KeyError as exc:
            raise CheckpointError(f"{where}: missing tensor {exc}") from exc
        if w.ndim != 2:
            raise CheckpointError(f"{where}: {names[i]}.weight should be a Linear matrix, got shape {tuple(w.shape)}")
        linear = nn.Linear(w.shape[1], w.shape[0])
        linear.load_state_dict({"weight": w, "bias": b})
        layers.append(linear)
        if activation != "linear" and (not last or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if layer_norm:
            i += 1
            if i >= len(names):
                raise CheckpointError(f"{where}: is_layer_norm is set but {names[i - 1]} has no LayerNorm after it")
            g, beta = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
            norm = nn.LayerNorm(g.shape[0])
            norm.load_state_dict({"weight": g, "bias": beta})
            layers.append(norm)
        i += 1
    return nn.Sequential(*layers).eval().requires_grad_(False)


def build_hypernetwork(data: Mapping[Any, Any], source: str = "hypernetwork") -> dict[int, tuple[nn.Module, nn.Module]]:
    """Width -> (key module, value module) of a hypernetwork dict (see the module docstring for the layout)."""
    activation = str(data.get("activation_func", "linear"))
    if activation not in ACTIVATIONS:
        raise CheckpointError(f"{source}: unsupported activation_func {activation!r}; supported: "
                              f"{', '.join(ACTIVATIONS)}")
    layer_norm = bool(data.get("is_layer_norm", False))
    activate_output = bool(data.get("activate_output", False))
    out: dict[int, tuple[nn.Module, nn.Module]] = {}
    for key, pair in data.items():
        d = _width(key)
        if d is None:
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) < 2 or not all(isinstance(m, Mapping) for m in pair[:2]):
            raise CheckpointError(f"{source}: entry {key!r} should be [key_module_state, value_module_state]")
        k_mod, v_mod = (_module(pair[j], activation, layer_norm, activate_output, f"{source} [{key}][{j}]")
                        for j in (0, 1))
        out[d] = (k_mod, v_mod)
    if not out:
        raise CheckpointError(f"{source}: no attention-width entries (integer keys) found; not an A1111 hypernetwork")
    return out


def _placed(module: nn.Module, like: torch.Tensor) -> nn.Module:
    """``module`` itself when its weights already sit on ``like``'s device and dtype, else a moved copy."""
    p = next(module.parameters(), None)
    if p is None or (p.device == like.device and p.dtype == like.dtype):
        return module
    return copy.deepcopy(module).to(like.device, like.dtype)


class HypernetworkPatch:
    """``attn1_patch`` / ``attn2_patch``: ``(n, key_in, value_in, extra) -> (n, key_in', value_in')``."""

    def __init__(self, modules: Mapping[int, tuple[nn.Module, nn.Module]], strength: float) -> None:
        self.modules = dict(modules)
        self.strength = float(strength)
        self._placed: dict[tuple[int, torch.device, torch.dtype], tuple[nn.Module, nn.Module]] = {}

    def _on(self, d: int, like: torch.Tensor) -> tuple[nn.Module, nn.Module]:
        key = (d, like.device, like.dtype)
        if key not in self._placed:
            k_mod, v_mod = self.modules[d]
            self._placed[key] = (_placed(k_mod, like), _placed(v_mod, like))
        return self._placed[key]

    def __call__(self, n: torch.Tensor, key_in: torch.Tensor, value_in: torch.Tensor,
                 extra: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = int(key_in.shape[-1])
        if d in self.modules:
            k_mod, v_mod = self._on(d, key_in)
            key_in = key_in + k_mod(key_in) * self.strength
            value_in = value_in + v_mod(value_in) * self.strength
        return n, key_in, value_in

    def to(self, device: torch.device | str) -> HypernetworkPatch:
        """ComfyUI's patch API: the modules follow the model to ``device``."""
        self.modules = {d: (k.to(device), v.to(device)) for d, (k, v) in self.modules.items()}
        self._placed.clear()
        return self


def load_hypernetwork(path: str | os.PathLike[str], strength: float) -> HypernetworkPatch:
    """The patch of one hypernetwork file at ``strength``."""
    return HypernetworkPatch(build_hypernetwork(read_hypernetwork(path), Path(path).name), strength)
