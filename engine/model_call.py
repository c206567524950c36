"""Wrappers around each model call (``ModelHandle.apply_model``): where ComfyUI runs the ``apply_model`` wrappers
packs register on a model.

Each call is a ``ModelCall``; each installed wrapper gets it and ``proceed(call=None)``: the next wrapper or, last,
the handle's own model call over the call it is given (default: its own), and returns the denoised latent. With no
wrapper installed the handle calls its network directly. The ComfyUI compatibility layer installs one
(``app/compat/_model_wrappers.py``).

Inside a call, the network itself is called once (``NetworkCall``: the handle, the network module and the
positional / keyword arguments it is called with, ``(x, timesteps)`` and ``context``, ``y``, ``control``,
``transformer_options``); network wrappers get it and ``proceed(call=None)`` and return the network's output.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.installed import install_once, through_wrappers

if TYPE_CHECKING:
    import torch

__all__ = ["ModelCall", "CallWrapper", "add_call_wrapper", "has_call_wrappers", "wrapped_model_call", "NetworkCall",
           "NetworkWrapper", "add_network_wrapper", "network_call"]


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class ModelCall:
    """One model call: the handle, noisy ``x`` at ``sigma``, the text ``context``, ``y`` (ADM), ``concat`` (extra
    input channels), ``control`` (ControlNet residuals) and ``transformer_options`` (the UNet's patch options)."""

    model: Any
    x: torch.Tensor
    sigma: torch.Tensor
    context: torch.Tensor | None
    y: torch.Tensor | None
    concat: torch.Tensor | None
    control: dict[str, list[Any]] | None
    transformer_options: dict[str, Any] | None


CallWrapper = Callable[[ModelCall, Callable[..., "torch.Tensor"]], "torch.Tensor"]

_CALL_WRAPPERS: list[CallWrapper] = []


def add_call_wrapper(wrapper: CallWrapper) -> Callable[[], None]:
    """Install a call wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_CALL_WRAPPERS, wrapper)


def has_call_wrappers() -> bool:
    """Whether any call wrapper is installed (none: the handle skips building a ModelCall)."""
    return bool(_CALL_WRAPPERS)


def wrapped_model_call(call: ModelCall, inner: Callable[[ModelCall], torch.Tensor]) -> torch.Tensor:
    """``inner(call)`` through the installed call wrappers."""
    return through_wrappers(_CALL_WRAPPERS, inner, call)


@dataclass(frozen=True, eq=False)
class NetworkCall:
    """One call of a handle's network: ``module(*args, **kwargs)``."""

    model: Any
    module: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


NetworkWrapper = Callable[[NetworkCall, Callable[..., "torch.Tensor"]], "torch.Tensor"]

_NETWORK_WRAPPERS: list[NetworkWrapper] = []


def add_network_wrapper(wrapper: NetworkWrapper) -> Callable[[], None]:
    """Install a network wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_NETWORK_WRAPPERS, wrapper)


def network_call(call: NetworkCall, inner: Callable[[NetworkCall], torch.Tensor]) -> torch.Tensor:
    """``inner(call)`` through the installed network wrappers (none: a plain call)."""
    return through_wrappers(_NETWORK_WRAPPERS, inner, call)
