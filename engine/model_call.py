"""Wrappers around each model call (``ModelHandle.apply_model``) and each forward of its network inside it: where
ComfyUI runs the ``apply_model`` and ``diffusion_model`` wrappers packs register on a model.

Each model call is a ``ModelCall``; each installed call wrapper gets it and ``proceed(call=None)``: the next wrapper
or, last, the handle's own model call over the call it is given (default: its own), and returns the denoised latent.
Each network forward is a ``NetworkCall`` (the input already scaled, extra channels joined, the timesteps the
network's); each network wrapper gets it and ``proceed(call=None)`` and returns the network's raw output. With no
wrapper installed the handle calls its network directly. The ComfyUI compatibility layer installs them
(``app/compat/_model_wrappers.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.installed import install_once, through_wrappers

if TYPE_CHECKING:
    import torch

__all__ = ["NETWORK_INPUTS", "ModelCall", "NetworkCall", "CallWrapper", "NetworkWrapper", "add_call_wrapper",
           "add_network_wrapper", "has_call_wrappers", "has_network_wrappers", "wrapped_model_call",
           "wrapped_network_call"]


# network keyword inputs a call may carry beyond x, timestep, context, y and control, by ComfyUI's cond names:
# Flux Kontext's reference latents (engine.sampling.reference_latents) and their placement method
NETWORK_INPUTS = ("ref_latents", "ref_latents_method")


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class ModelCall:
    """One model call: the handle, noisy ``x`` at ``sigma``, the text ``context``, ``y`` (ADM), ``concat`` (extra
    input channels), ``control`` (ControlNet residuals), ``transformer_options`` (the UNet's patch options) and
    ``extra_inputs`` (further network keyword inputs by ComfyUI's names, ``NETWORK_INPUTS``)."""

    model: Any
    x: torch.Tensor
    sigma: torch.Tensor
    context: torch.Tensor | None
    y: torch.Tensor | None
    concat: torch.Tensor | None
    control: dict[str, list[Any]] | None
    transformer_options: dict[str, Any] | None
    extra_inputs: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)  # identity: holds tensors
class NetworkCall:
    """One forward of the handle's network: ``model`` the handle, ``network`` the module, ``x`` its input (scaled,
    extra channels joined, on the compute device), ``timesteps`` the network's timesteps and ``kwargs`` the rest
    of its arguments (``context``, ``y``, and ``control`` / ``transformer_options`` where given)."""

    model: Any
    network: Any
    x: torch.Tensor
    timesteps: torch.Tensor
    kwargs: dict[str, Any]


CallWrapper = Callable[[ModelCall, Callable[..., "torch.Tensor"]], "torch.Tensor"]
NetworkWrapper = Callable[[NetworkCall, Callable[..., "torch.Tensor"]], "torch.Tensor"]

_CALL_WRAPPERS: list[CallWrapper] = []
_NETWORK_WRAPPERS: list[NetworkWrapper] = []


def add_call_wrapper(wrapper: CallWrapper) -> Callable[[], None]:
    """Install a call wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_CALL_WRAPPERS, wrapper)


def has_call_wrappers() -> bool:
    """Whether any call wrapper is installed (none: the handle skips building a ModelCall)."""
    return bool(_CALL_WRAPPERS)


def wrapped_model_call(call: ModelCall, inner: Callable[[ModelCall], torch.Tensor]) -> torch.Tensor:
    """``inner(call)`` through the installed call wrappers."""
    return through_wrappers(_CALL_WRAPPERS, inner, call)


def add_network_wrapper(wrapper: NetworkWrapper) -> Callable[[], None]:
    """Install a network wrapper once (the most recently installed runs outermost); returns its remover."""
    return install_once(_NETWORK_WRAPPERS, wrapper)


def has_network_wrappers() -> bool:
    """Whether any network wrapper is installed (none: the handle calls its network directly)."""
    return bool(_NETWORK_WRAPPERS)


def wrapped_network_call(call: NetworkCall, inner: Callable[[NetworkCall], torch.Tensor]) -> torch.Tensor:
    """``inner(call)`` through the installed network wrappers."""
    return through_wrappers(_NETWORK_WRAPPERS, inner, call)
