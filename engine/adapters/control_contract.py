"""CONTROL_NET objects that follow ComfyUI's control contract instead of being Loom's ``ControlHandle``.

Packs build their own control objects by subclassing ComfyUI's ``comfy.controlnet.ControlBase`` / ``ControlNet`` /
``T2IAdapter`` (Advanced-ControlNet's keyframed controls are the common case; Loom's compatibility layer provides
those base classes). Such an object computes its residuals itself; what the sampler owes it is ComfyUI's calling
contract, which this module honours for one sampling run:

* ``pre_run(model, percent_to_timestep_function)`` once before sampling (``model`` is ComfyUI's BaseModel, here
  the MODEL handle's ``comfy.model_base`` view; the function maps a percent to a sigma); the object recurses into
  its ``previous_controlnet`` itself;
* ``get_control(x_noisy, t, cond, batched_number, transformer_options)`` for every model call of the conds it is
  on: raw ``x`` and per-row sigmas ``t`` of the batched call, ``cond`` holding ``c_crossattn`` (and ``y``),
  ``batched_number`` the cond groups in the batch, ``transformer_options`` the model's plus ``cond_or_uncond``,
  ``sigmas`` and ``sample_sigmas``; it returns ComfyUI's ``{"input", "middle", "output"}`` lists (or None);
* ``cleanup()`` once after sampling, also when sampling fails.

What Loom does not run raises, naming it: ``get_extra_hooks()`` returning hooks (ComfyUI's hook system), and a
chain in which such an object's ``previous_controlnet`` is a Loom ``ControlHandle`` (the object would call
``get_control`` on it; apply the pack's control first, then Loom's, or use one kind for the chain).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Residuals = dict[str, list[torch.Tensor | None]]

__all__ = ["CONTRACT_METHODS", "ContractControlRun", "follows_control_contract"]

CONTRACT_METHODS = ("get_control", "pre_run", "cleanup", "copy", "set_cond_hint", "set_previous_controlnet")


def follows_control_contract(obj: Any) -> bool:
    """Whether ``obj`` offers ComfyUI's control methods (a pack's ControlBase subclass); Loom's ControlHandle,
    which the sampler runs itself, has no ``get_control``."""
    return all(callable(getattr(obj, m, None)) for m in CONTRACT_METHODS)


def _check_chain(control: Any) -> None:
    node, depth = control, 0
    while node is not None:
        if not follows_control_contract(node):
            raise TypeError(f"a {type(control).__name__} control (a pack's ComfyUI ControlBase) is chained onto a "
                            f"{type(node).__name__} (Loom's CONTROL_NET from ControlNetLoader?), which has no "
                            f"get_control: Loom cannot run that chain. Apply Loom's ControlNet after the pack's "
                            f"control, or load both with the pack's loader")
        hooks = node.get_extra_hooks() if callable(getattr(node, "get_extra_hooks", None)) else []
        if hooks:
            raise NotImplementedError(f"control {type(node).__name__} carries ComfyUI hooks (get_extra_hooks: "
                                      f"{[type(h).__name__ for h in hooks]}); Loom does not run ComfyUI's hook system")
        node, depth = getattr(node, "previous_controlnet", None), depth + 1
        if depth > 10_000:
            raise ValueError(f"control {type(control).__name__}: its previous_controlnet chain loops")


class ContractControlRun:
    """One contract control (and the chain it runs itself) for one sampling run; the sampler's interface is
    ``ControlRun``'s: ``run(...)`` per model call, ``record`` and ``release`` after."""

    def __init__(self, control: Any, model: Any, sample_sigmas: torch.Tensor | None) -> None:
        _check_chain(control)
        self.control = control
        self.sample_sigmas = sample_sigmas
        self.model_calls = 0
        model_sampling = model.model_sampling
        percent_to_sigma: Callable[[float], float] = lambda p: float(model_sampling.percent_to_sigma(p))  # noqa: E731
        control.pre_run(model.model, percent_to_sigma)

    @property
    def entries(self) -> list[Any]:
        """Loom-managed networks to keep loaded with the UNet: none (the control loads its own)."""
        return []

    def run(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
            batched_number: int, call: dict[str, Any] | None = None) -> Residuals | None:
        """``get_control`` for one batched model call (``call``: the call's transformer options)."""
        cond: dict[str, Any] = {"c_crossattn": context}
        if y is not None:
            cond["y"] = y
        options = dict(call or {})
        options.setdefault("sigmas", sigma)
        if self.sample_sigmas is not None:
            options.setdefault("sample_sigmas", self.sample_sigmas)
        self.model_calls += 1
        out: Residuals | None = self.control.get_control(x, sigma, cond, batched_number, options)
        return out

    def record(self, schedule: Sequence[float]) -> None:
        """Contract controls keep their own state; nothing goes to the run's adapter report."""
        return None

    def release(self) -> None:
        """ComfyUI's ``cleanup()`` after the run."""
        self.control.cleanup()
