"""CONTROL_NET handles and what one sampling run does with them (ComfyUI's ControlNet / T2IAdapter objects).

A ``ControlHandle`` is a loaded ControlNet or T2I-Adapter (network shared by copies) plus, once an apply node
has set them, the hint image, strength, start / end percent and the previous control of a chain. Handles
are never changed by sampling: ``bind_controls`` gives each sampling run its own ``ControlRun`` objects,
which resize the hint for the latent, map the percents to sigmas and compute the residuals per model call:

* ControlNet: every call, on the same rows as the UNet (c_in-scaled x, the UNet's integer timestep, each
  row's text context, and the ADM ``y`` for SDXL), each output times strength;
* T2I-Adapter: once per run from the hint (batch 1), then per call a copy times strength;
* a chain's outputs are summed (previous + this), and a control outside its sigma window gives the
  previous one's outputs only.

The UNet adds ``output[i]`` to input block i's skip, ``middle`` after the middle block and T2I ``input``
features after input blocks 2, 5, 8, 11 (``engine.networks.unet``).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.adapters.control_contract import ContractControlRun, follows_control_contract
from engine.adapters.detect import ControlSpec
from engine.model_management import ManagedModel, ModelManager
from engine.reports import AdapterRecord

__all__ = ["AnyControlRun", "ControlHandle", "ControlRun", "bind_controls", "broadcast_rows", "merge_residuals", "resize_hint", "Residuals"]

Residuals = dict[str, list[torch.Tensor | None]]


class ControlHandle:
    """The CONTROL_NET: a ControlNet / T2I-Adapter network and, once applied, its hint and settings.

    ``copy()`` shares the network; ``set_cond_hint`` / ``set_previous_controlnet`` (ComfyUI's names) set
    the apply settings on a copy the apply nodes make.
    """

    def __init__(self, module: nn.Module, entry: ManagedModel, manager: ModelManager, spec: ControlSpec,
                 config: Any, name: str) -> None:
        self.module = module
        self.entry = entry
        self.manager = manager
        self.spec = spec
        self.config = config
        self.name = name
        self.cond_hint_original: torch.Tensor | None = None
        self.strength = 1.0
        self.timestep_percent_range: tuple[float, float] = (0.0, 1.0)
        self.previous_controlnet: ControlHandle | None = None
        self.vae: Any = None

    def __getattr__(self, name: str) -> Any:
        """Reached only for attributes a handle lacks: name the case of packs reading ComfyUI's control internals
        (``t2i_model``, ``control_model``, ...), which Loom's handle does not have."""
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"Loom's CONTROL_NET {self.__dict__.get('name', '?')!r} (from ControlNetLoader) has no "
                             f"ComfyUI control attribute {name!r}: a pack that reads ComfyUI's control internals "
                             f"(Advanced-ControlNet's apply nodes converting a T2I-Adapter) needs the file loaded with "
                             f"the pack's own loader (comfy.controlnet.load_controlnet)")

    @property
    def is_t2i(self) -> bool:
        return self.spec.is_t2i

    @property
    def family(self) -> str:
        return self.spec.family.name

    def copy(self) -> ControlHandle:
        """A handle sharing the network, with its own apply settings."""
        return copy.copy(self)

    def set_cond_hint(self, cond_hint: torch.Tensor, strength: float = 1.0,
                      timestep_percent_range: tuple[float, float] = (0.0, 1.0), vae: Any = None,
                      extra_concat: Any = None) -> ControlHandle:
        """Set the hint (NCHW, 0..1), strength and start / end percent; returns self."""
        self.cond_hint_original = cond_hint
        self.strength = float(strength)
        self.timestep_percent_range = (float(timestep_percent_range[0]), float(timestep_percent_range[1]))
        self.vae = vae
        return self

    def set_previous_controlnet(self, controlnet: ControlHandle | None) -> ControlHandle:
        """Chain: this control's outputs are added to ``controlnet``'s; returns self."""
        self.previous_controlnet = controlnet
        return self

    def chain(self) -> list[ControlHandle]:
        """This control and its previous ones, outermost first."""
        out: list[ControlHandle] = []
        node: ControlHandle | None = self
        while node is not None:
            out.append(node)
            node = node.previous_controlnet
        return out

    def describe(self) -> dict[str, Any]:
        """File, kind and settings (for the history entry)."""
        return {"file": self.name, "kind": "t2i_adapter" if self.is_t2i else "controlnet", "family": self.family,
                "strength": self.strength, "start_percent": self.timestep_percent_range[0],
                "end_percent": self.timestep_percent_range[1]}


def resize_hint(hint: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """ComfyUI's ``common_upscale(hint, width, height, "nearest-exact", "center")``: crop the NCHW hint to the
    target aspect ratio around its centre, then nearest-exact resize."""
    old_w, old_h = hint.shape[-1], hint.shape[-2]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = hint.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    return F.interpolate(cropped, size=(height, width), mode="nearest-exact")


def broadcast_rows(hint: torch.Tensor, rows: int, batched_number: int) -> torch.Tensor:
    """ComfyUI's ``broadcast_image_to``: a batch-1 hint stays as is (it broadcasts); else per-row hints."""
    if hint.shape[0] == 1:
        return hint
    per_batch = rows // batched_number
    hint = hint[:per_batch]
    if per_batch > hint.shape[0]:
        hint = torch.cat([hint] * (per_batch // hint.shape[0]) + [hint[:per_batch % hint.shape[0]]])
    return hint if hint.shape[0] == rows else torch.cat([hint] * batched_number)


def merge_residuals(out: Residuals, prev: Residuals | None) -> Residuals:
    """A chain's residuals: ``prev``'s (the earlier control's) added to ``out``'s per block, in place of missing
    ones (ComfyUI's ``control_merge`` rule)."""
    if prev is None:
        return out
    for key in ("input", "middle", "output"):
        mine = out.setdefault(key, [])
        for i, p in enumerate(prev.get(key, [])):
            if i >= len(mine):
                mine.append(p)
            elif p is not None:
                current = mine[i]
                mine[i] = p if current is None else p + current
    return out


class ControlRun:
    """One control of one sampling run: its sigma window, the resized hint and (T2I) features, and the steps
    it acted on. ``run(x, sigma, context, y, batched_number)`` gives the merged residuals of its chain."""

    def __init__(self, handle: ControlHandle, model: Any, previous: ControlRun | ContractControlRun | None) -> None:
        if handle.cond_hint_original is None:
            raise ValueError(f"control {handle.name} has no hint: apply it with ControlNetApplyAdvanced first")
        self.handle = handle
        self.previous = previous
        self.model_sampling = model.model_sampling
        start, end = handle.timestep_percent_range
        self.sigma_start = float(self.model_sampling.percent_to_sigma(start))
        self.sigma_end = float(self.model_sampling.percent_to_sigma(end))
        self.device = handle.manager.policy.device
        self.dtype = next(handle.module.parameters()).dtype
        self.hint: torch.Tensor | None = None
        self.features: Residuals | None = None
        self.sigmas_acted: list[float] = []
        self.model_calls = 0

    def _hint_for(self, x: torch.Tensor) -> torch.Tensor:
        width, height = x.shape[3] * 8, x.shape[2] * 8
        if self.handle.is_t2i:
            unshuffle = self.handle.config.unshuffle
            width, height = (math.ceil(width / unshuffle) * unshuffle, math.ceil(height / unshuffle) * unshuffle)
        if self.hint is None or self.hint.shape[-2:] != (height, width):
            original = self.handle.cond_hint_original
            assert original is not None
            hint = resize_hint(original.float(), width, height)
            if self.handle.is_t2i and self.handle.config.hint_channels == 1 and hint.shape[1] > 1:
                hint = hint.mean(1, keepdim=True)
            self.hint = hint.to(self.device, self.dtype)
            self.features = None
        return self.hint

    def _controlnet(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
                    batched_number: int) -> Residuals:
        hint = broadcast_rows(self._hint_for(x), x.shape[0], batched_number)
        ms = self.model_sampling
        xc = ms.calculate_input(sigma, x).to(self.device, self.dtype)
        t = ms.timestep(sigma).float().to(self.device)
        module = self.handle.manager.load(self.handle.entry)
        ctx = context.to(self.device, self.dtype)
        with torch.no_grad():
            out: Residuals = module(xc, hint, t, ctx, y=None if y is None else y.to(self.device, self.dtype))
        return out

    def _t2i(self, x: torch.Tensor) -> Residuals:
        hint = self._hint_for(x)
        if self.features is None:
            module = self.handle.manager.load(self.handle.entry)
            with torch.no_grad():
                self.features = module(hint)
        return {k: [None if a is None else a.clone() for a in v] for k, v in self.features.items()}

    @property
    def entries(self) -> list[ManagedModel]:
        """The network to keep loaded with the UNet while sampling."""
        return [self.handle.entry]

    def run(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
            batched_number: int, call: dict[str, Any] | None = None) -> Residuals | None:
        """Residuals of this control and its chain for one model call (None when none acts); ``call``: the
        call's transformer options, for a previous control that follows ComfyUI's contract."""
        prev = self.previous.run(x, sigma, context, y, batched_number, call) if self.previous is not None else None
        s = float(sigma[0])
        if s > self.sigma_start or s < self.sigma_end:
            return prev
        if not self.sigmas_acted or self.sigmas_acted[-1] != s:
            self.sigmas_acted.append(s)
        self.model_calls += 1
        out = self._t2i(x) if self.handle.is_t2i else self._controlnet(x, sigma, context, y, batched_number)
        strength = self.handle.strength
        scaled: Residuals = {k: [None if a is None else a * strength for a in v] for k, v in out.items()}
        return merge_residuals(scaled, prev)

    def release(self) -> None:
        """Nothing to undo after the run (the handle is never changed by sampling)."""

    def record(self, schedule: Sequence[float]) -> AdapterRecord:
        """What this control did in the run whose sigma ``schedule`` is given (for the history entry)."""
        acted = set(self.sigmas_acted)
        h = self.handle
        return AdapterRecord(
            file=h.name, kind="t2i_adapter" if h.is_t2i else "controlnet", family=h.family, strength=h.strength,
            start_percent=h.timestep_percent_range[0], end_percent=h.timestep_percent_range[1],
            sigma_start=self.sigma_start, sigma_end=self.sigma_end,
            steps=[i for i, s in enumerate(schedule[:-1]) if s in acted], sigmas=list(self.sigmas_acted),
            model_calls=self.model_calls, previous=self._previous_name())

    def _previous_name(self) -> str | None:
        if isinstance(self.previous, ControlRun):
            return self.previous.handle.name
        return None if self.previous is None else type(self.previous.control).__name__


def _uncond_handles(positive: list[Any], negative: list[Any]) -> list[Any]:
    """The negative entries' controls. ControlNetApply (deprecated) sets ``control_apply_to_uncond``: negative
    entries without a control then get the positive's (ComfyUI's apply_empty_x_to_equal_area; areas excluded)."""
    handles = [c.extra.get("control") for c in negative]
    cnets = [c.extra["control"] for c in positive if c.extra.get("control_apply_to_uncond")
             and c.extra.get("control") is not None and "area" not in c.extra]
    free = [i for i, c in enumerate(negative) if "area" not in c.extra]
    if not cnets or not free or any(handles[i] is not None for i in free):
        return handles
    for k, cnet in enumerate(cnets):
        handles[free[k % len(free)]] = cnet
    return handles


AnyControlRun = ControlRun | ContractControlRun


def bind_controls(positive: list[Any], negative: list[Any], model: Any,
                  sample_sigmas: torch.Tensor | None = None) -> list[AnyControlRun]:
    """Give every resolved cond (``engine.sampling.conditioning.Cond``) with a CONTROL_NET its run object
    (``cond.control``); conds sharing a handle share the run, so they stay batchable. Returns the runs: call
    each one's ``release()`` when sampling ends. A control that follows ComfyUI's control contract (a pack's
    ``ControlBase`` subclass) runs itself (``engine.adapters.control_contract``; ``pre_run`` is called here)."""
    handles = [c.extra.get("control") for c in positive] + _uncond_handles(positive, negative)
    runs: dict[int, AnyControlRun] = {}

    def run_for(handle: Any) -> AnyControlRun:
        if id(handle) not in runs:
            if isinstance(handle, ControlHandle):
                prev = run_for(handle.previous_controlnet) if handle.previous_controlnet is not None else None
                runs[id(handle)] = ControlRun(handle, model, prev)
            elif follows_control_contract(handle):
                runs[id(handle)] = ContractControlRun(handle, model, sample_sigmas, run_for)
            else:
                raise TypeError(f"conditioning 'control' must be a CONTROL_NET from a ControlNet apply node, "
                                f"got {type(handle).__name__}")
        return runs[id(handle)]

    try:
        for c, handle in zip(positive + negative, handles, strict=True):
            c.control = run_for(handle) if handle is not None else None
    except BaseException:
        for run in runs.values():
            run.release()
        raise
    return list(runs.values())
