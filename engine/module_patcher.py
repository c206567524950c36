"""ComfyUI's ``ModelPatcher`` as packs build it over any network (``ModelPatcher(model, load_device,
offload_device)``: AnimateDiff-Evolved's motion modules), and the patcher registries every patcher shares.

``ModulePatcher`` keeps a module with its load / offload devices and ComfyUI's patcher state (``engine.patching``):
wrappers, callbacks, attachments, additional models and injections, copied by ``clone()`` (which shares the
module). Loom's MODEL handle (``engine.handles.ModelHandle``) is one too, so ``isinstance(model, ModelPatcher)``
holds for a MODEL. A module patcher is loaded onto its device when a MODEL that keeps it among its additional models
samples (``load()``, calling its ``on_load_after`` callbacks as ComfyUI's loader does) and offloaded after
(``offload()``); its weight patches (``add_patches``: a motion LoRA) are written into the module's weights at load
and the original weights put back at offload, as ComfyUI's loader patches and unpatches them.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.patching import Patchable, check_registration

__all__ = ["ModulePatcher"]


class ModulePatcher(Patchable):
    """ComfyUI's ModelPatcher over ``model`` (any ``nn.Module``), computing on ``load_device`` and kept on
    ``offload_device`` between runs."""

    def __init__(self, model: nn.Module, load_device: torch.device | str, offload_device: torch.device | str,
                 size: int = 0, weight_inplace_update: bool = False) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"ModelPatcher(model, ...): model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload_device)
        self.size = size
        self._backup: dict[str, torch.Tensor] = {}

    def _module(self) -> nn.Module:
        module: nn.Module = self.model
        return module

    def clone(self) -> ModulePatcher:
        """A patcher sharing the module, with its own copy of the patcher state (``on_clone`` callbacks run)."""
        other = copy.copy(self)
        self._copy_patcher_state_to(other)
        if isinstance(other, ModulePatcher) and "_backup" in vars(self):
            other._backup = {}
        for callback in self.get_all_callbacks("on_clone"):
            callback(self, other)
        return other

    def is_clone(self, other: Any) -> bool:
        """Whether ``other`` patches the same module."""
        return isinstance(other, ModulePatcher) and other._module() is self._module()

    def model_size(self) -> int:
        """Bytes of the module's parameters and buffers."""
        tensors = [*self._module().parameters(), *self._module().buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def model_dtype(self) -> torch.dtype:
        """The dtype of the module's first parameter."""
        return next(self._module().parameters()).dtype

    def pre_run(self) -> None:
        """ComfyUI's ``pre_run``: the ``on_pre_run`` callbacks (``fn(patcher)``)."""
        for callback in self.get_all_callbacks("on_pre_run"):
            callback(self)

    def cleanup(self) -> None:
        """ComfyUI's ``cleanup``: the ``on_cleanup`` callbacks (``fn(patcher)``)."""
        for callback in self.get_all_callbacks("on_cleanup"):
            callback(self)

    def load(self, device_to: torch.device | None = None, lowvram_model_memory: int = 0,
             force_patch_weights: bool = False, full_load: bool = False) -> None:
        """ComfyUI's ``load``: move the module to ``device_to`` (default ``load_device``) and run the
        ``on_load_after`` callbacks (``fn(patcher, device_to, lowvram_model_memory, force_patch_weights, full_load)``).
        The weight patches are written into the (shared) module's weights until ``offload``."""
        device = self.load_device if device_to is None else torch.device(device_to)
        module = self._module()
        module.to(device)
        if self.patches and not self._backup:
            params = dict(module.named_parameters())
            for name, value in self._patched_weights(module).items():
                self._backup[name] = params[name].detach().clone()
                params[name].data.copy_(value)
        for callback in self.get_all_callbacks("on_load_after"):
            callback(self, device, lowvram_model_memory, force_patch_weights, full_load)

    def offload(self) -> None:
        """Put back the weights ``load`` patched and move the module to ``offload_device``."""
        params = dict(self._module().named_parameters())
        for name, value in self._backup.items():
            params[name].data.copy_(value)
        self._backup = {}
        self._module().to(self.offload_device)

    # ComfyUI's ModelPatcher wrapper / callback registries ({type: {key: [fn, ...]}}, copied by clone()); the ComfyUI
    # compatibility layer runs them (app/compat/_model_wrappers.py) and refuses, through the installed registration
    # checks (engine.patching), the types it does not run on this kind of patcher
    def add_wrapper(self, wrapper_type: str, wrapper: Callable[..., Any]) -> None:
        """ComfyUI's ``add_wrapper``: ``add_wrapper_with_key`` under the key None."""
        self.add_wrapper_with_key(wrapper_type, None, wrapper)

    def add_wrapper_with_key(self, wrapper_type: str, key: Any, wrapper: Callable[..., Any]) -> None:
        """Register ``wrapper`` (``fn(executor, *args, **kwargs)``) of ``wrapper_type`` under ``key``, unless an
        installed registration check refuses the type."""
        check_registration(self, "wrapper", wrapper_type)
        self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    def remove_wrappers_with_key(self, wrapper_type: str, key: Any) -> None:
        """Drop the wrappers of ``wrapper_type`` registered under ``key`` (on this handle)."""
        self.wrappers.get(wrapper_type, {}).pop(key, None)

    def get_wrappers(self, wrapper_type: str, key: Any) -> list[Callable[..., Any]]:
        """The wrappers of ``wrapper_type`` under ``key`` (the stored list, as ComfyUI)."""
        return self.wrappers.get(wrapper_type, {}).get(key, [])

    def get_all_wrappers(self, wrapper_type: str) -> list[Callable[..., Any]]:
        """Every wrapper of ``wrapper_type``, keys in registration order."""
        return [fn for fns in self.wrappers.get(wrapper_type, {}).values() for fn in fns]

    def add_callback(self, call_type: str, callback: Callable[..., Any]) -> None:
        """ComfyUI's ``add_callback``: ``add_callback_with_key`` under the key None."""
        self.add_callback_with_key(call_type, None, callback)

    def add_callback_with_key(self, call_type: str, key: Any, callback: Callable[..., Any]) -> None:
        """Register ``callback`` of ``call_type`` under ``key``, unless an installed registration check refuses the
        type."""
        check_registration(self, "callback", call_type)
        self.callbacks.setdefault(call_type, {}).setdefault(key, []).append(callback)

    def remove_callbacks_with_key(self, call_type: str, key: Any) -> None:
        """Drop the callbacks of ``call_type`` registered under ``key`` (on this handle)."""
        self.callbacks.get(call_type, {}).pop(key, None)

    def get_callbacks(self, call_type: str, key: Any) -> list[Callable[..., Any]]:
        """The callbacks of ``call_type`` under ``key`` (the stored list, as ComfyUI)."""
        return self.callbacks.get(call_type, {}).get(key, [])

    def get_all_callbacks(self, call_type: str) -> list[Callable[..., Any]]:
        """Every callback of ``call_type``, keys in registration order."""
        return [fn for fns in self.callbacks.get(call_type, {}).values() for fn in fns]

    def set_additional_models(self, key: Any, models: list[Any]) -> None:
        """ComfyUI's ``set_additional_models``: models kept with this one under ``key`` (a MODEL loads the module
        patchers among them for each of its samplings)."""
        self.additional_models[key] = list(models)

    def remove_additional_models(self, key: Any) -> None:
        """Drop the models kept under ``key``."""
        self.additional_models.pop(key, None)

    def get_additional_models_with_key(self, key: Any) -> list[Any]:
        """The models kept under ``key`` (empty when none)."""
        return self.additional_models.get(key, [])

    def get_additional_models(self) -> list[Any]:
        """Every kept model, keys in order."""
        return [m for models in self.additional_models.values() for m in models]

    def set_injections(self, key: Any, injections: list[Any]) -> None:
        """ComfyUI's ``set_injections``: ``PatcherInjection``s whose ``inject(model)`` runs before each sampling of
        a MODEL and ``eject(model)`` after it (ComfyUI runs them when the model is loaded and unloaded)."""
        self.injections[key] = list(injections)

    def remove_injections(self, key: Any) -> None:
        """Drop the injections kept under ``key``."""
        self.injections.pop(key, None)

    def get_injections(self, key: Any) -> list[Any]:
        """The injections kept under ``key`` (empty when none)."""
        return self.injections.get(key, [])
