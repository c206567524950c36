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

Chains may mix both kinds: a Loom control chained onto a contract one runs it as its previous run; a contract control
chained onto a Loom ``ControlHandle`` gets, for the run, a stand-in ``previous_controlnet`` whose ``get_control`` is
that handle's run (put back afterwards). What Loom does not run raises, naming it: ``get_extra_hooks()`` returning
hooks (ComfyUI's hook system), and a ``previous_controlnet`` that is neither kind.
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


def _check_hooks(node: Any) -> None:
    hooks = node.get_extra_hooks() if callable(getattr(node, "get_extra_hooks", None)) else []
    if hooks:
        raise NotImplementedError(f"control {type(node).__name__} carries ComfyUI hooks (get_extra_hooks: "
                                  f"{[type(h).__name__ for h in hooks]}); Loom does not run ComfyUI's hook system")


class _RunAsContract:
    """Loom's own control (its per-run object) answering ``get_control`` for a contract control chained onto it;
    pre_run / cleanup are the run's own business (``bind_controls`` releases it)."""

    previous_controlnet = None

    def __init__(self, run: Any) -> None:
        self.run = run

    def get_control(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any], batched_number: int,
                    transformer_options: dict[str, Any]) -> Residuals | None:
        out: Residuals | None = self.run.run(x, t, cond["c_crossattn"], cond.get("y"), batched_number,
                                             transformer_options)
        if out is None:
            return None
        return {key: list(out.get(key, [])) for key in ("input", "middle", "output")}  # merged controls have all

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        return None

    def cleanup(self) -> None:
        return None

    def get_models(self) -> list[Any]:
        return []

    def get_extra_hooks(self) -> list[Any]:
        return []

    def inference_memory_requirements(self, dtype: Any) -> int:
        return 0


class ContractControlRun:
    """One contract control (and the chain it runs itself) for one sampling run; the sampler's interface is
    ``ControlRun``'s: ``run(...)`` per model call, ``record`` and ``release`` after."""

    def __init__(self, control: Any, model: Any, sample_sigmas: torch.Tensor | None,
                 adopt: Callable[[Any], Any]) -> None:
        """``adopt(obj)``: the sampler's run object for a control that does not follow the contract (Loom's
        ``ControlHandle``), or a TypeError naming it; a contract control chained onto one calls that run through
        ``get_control`` during this run (its ``previous_controlnet`` is put back by ``release``)."""
        self.control = control
        self.sample_sigmas = sample_sigmas
        self.model_calls = 0
        self._rewired: list[tuple[Any, Any]] = []
        try:
            self._bridge_chain(adopt)
            model_sampling = model.model_sampling
            percent_to_sigma: Callable[[float], float] = lambda p: float(model_sampling.percent_to_sigma(p))  # noqa: E731
            control.pre_run(model.model, percent_to_sigma)
        except BaseException:
            self._restore()
            raise

    def _bridge_chain(self, adopt: Callable[[Any], Any]) -> None:
        node, depth = self.control, 0
        while node is not None:
            previous = getattr(node, "previous_controlnet", None)
            if previous is not None and not follows_control_contract(previous):
                bridge = _RunAsContract(adopt(previous))
                self._rewired.append((node, previous))
                node.previous_controlnet = bridge
                break
            node, depth = previous, depth + 1
            if depth > 10_000:
                raise ValueError(f"control {type(self.control).__name__}: its previous_controlnet chain loops")
        _check_hooks(self.control)  # ComfyUI's get_extra_hooks covers the chain (the bridge has none)

    def _restore(self) -> None:
        for node, previous in reversed(self._rewired):
            node.previous_controlnet = previous
        self._rewired.clear()

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
        """ComfyUI's ``cleanup()`` after the run; a bridged chain gets its own previous control back."""
        try:
            self.control.cleanup()
        finally:
            self._restore()
