"""Weight patches (LoRA, merges and friends) kept beside a shared network and applied at run time.

A patch is a weight delta (same shape as the weight) or a function weight(fp32) -> delta. Each weight keeps
an ordered list of entries ``(strength_patch, patch, strength_model)`` and is computed, in float32, as
ComfyUI's ``calculate_weight`` does: for each entry ``w = w * strength_model + strength_patch * delta``.
Patched weights are computed on the network's current device, cached per handle, and passed to the network
through ``torch.func.functional_call``; the shared base weights are never modified.

A merge (ComfyUI's ``add_patches(other.get_key_patches(), 1 - r, r)``) is one more entry whose delta is the
other handle's weight with that handle's own patches applied (``HandleWeight``): chains of merges and LoRAs
compose in the order they were added, and nothing is copied until the handle runs.

A weight a custom layer keeps *packed* (a tensor subclass whose storage shape is not the weight's shape, as
GGUF's quantised layers hold them) is patched from its unpacked float32 value, which an installed unpacker
(``add_weight_unpacker``; the compatibility layer installs one for layers with ComfyUI's layer contract) gets
from its layer; the patched plain tensor then takes the packed one's place in the call. A packed weight no
unpacker claims is refused when the patch is added.

A patch value in another form (ComfyUI's `("diff", (tensor,))`-style tuples, or a pack's own kind such as
inpaint-nodes' `("fooocus", ...)`) becomes a delta function through an installed resolver (``add_patch_resolver``;
the compatibility layer's runs ComfyUI's `comfy.lora.calculate_weight`, which packs replace); with none that claims
it, the patch is refused when it is added, naming the weight.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

from engine.installed import install_once

__all__ = ["Patch", "PatchEntry", "Patchable", "HandleWeight", "Unpacker", "PatchResolver", "add_weight_unpacker",
           "add_patch_resolver", "apply_entries", "is_packed", "add_registration_check", "check_registration"]

Patch = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
Registry = dict[str, dict[Any, list[Callable[..., Any]]]]

# checks installed from outside the engine (the ComfyUI compatibility layer knows which wrapper / callback types
# it runs): each is called ``check(patcher, section, kind)`` before a patcher (engine.module_patcher) registers a
# wrapper ("wrapper") or callback ("callback") of ``kind``, and raises to refuse it
_REGISTRATION_CHECKS: list[Callable[[Any, str, str], None]] = []


def add_registration_check(check: Callable[[Any, str, str], None]) -> Callable[[], None]:
    """Install a registration check once; returns its remover."""
    return install_once(_REGISTRATION_CHECKS, check)


def check_registration(patcher: Any, section: str, kind: str) -> None:
    """Run the installed registration checks for a ``section`` ("wrapper" / "callback") entry of ``kind`` on
    ``patcher``."""
    for check in list(_REGISTRATION_CHECKS):
        check(patcher, section, kind)


PatchEntry = tuple[float, Patch, float]
# (layer, attribute name) -> a function returning that packed tensor's float32 value, or None when not its kind
Unpacker = Callable[[nn.Module, str], Union[Callable[[], torch.Tensor], None]]
# (weight key, patch value in another form) -> a delta function ``w(fp32) -> delta``, or None when not its kind
PatchResolver = Callable[[str, Any], Union[Callable[[torch.Tensor], torch.Tensor], None]]

_UNPACKERS: list[Unpacker] = []
_RESOLVERS: list[PatchResolver] = []

log = logging.getLogger(__name__)


def add_weight_unpacker(unpacker: Unpacker) -> Callable[[], None]:
    """Install ``unpacker`` once; returns the function that removes it."""
    return install_once(_UNPACKERS, unpacker)


def add_patch_resolver(resolver: PatchResolver) -> Callable[[], None]:
    """Install ``resolver`` once; returns the function that removes it."""
    return install_once(_RESOLVERS, resolver)


def _as_patch(key: str, value: Any) -> Patch:
    """A patch value as a delta tensor or delta function (module docstring); ValueError for a form nothing claims."""
    if isinstance(value, torch.Tensor) or callable(value):
        return value  # type: ignore[no-any-return]
    for resolver in list(_RESOLVERS):
        patch = resolver(key, value)
        if patch is not None:
            return patch
    kind = value[0] if isinstance(value, tuple) and value and isinstance(value[0], str) else type(value).__name__
    raise ValueError(f"cannot patch {key}: a patch of kind {kind!r} is neither a weight delta nor a function of the "
                     "weight, and no installed patch resolver (ComfyUI's comfy.lora.calculate_weight) takes it")


def _copy_registry(registry: Registry) -> Registry:
    return {kind: {key: list(fns) for key, fns in by_key.items()} for kind, by_key in registry.items()}


def is_packed(tensor: torch.Tensor) -> bool:
    """Whether a custom layer keeps this tensor packed: its storage shape is not the shape it reports."""
    return tuple(tensor.size()) != tuple(tensor.shape)


def _unpacker_for(module: nn.Module, name: str, tensor: torch.Tensor) -> Callable[[], torch.Tensor] | None:
    """None for an ordinary weight; for a packed one, the function giving its float32 value (ValueError when
    no installed unpacker knows its layer)."""
    if not is_packed(tensor):
        return None
    owner, _, attr = name.rpartition(".")
    layer = module.get_submodule(owner)
    for unpacker in list(_UNPACKERS):
        unpack = unpacker(layer, attr)
        if unpack is not None:
            return unpack
    raise ValueError(f"cannot patch {name} (a LoRA or model-merge patch): its layer ({type(layer).__name__}) keeps "
                     f"that weight packed ({type(tensor).__name__}: {tuple(tensor.size())} stored for a "
                     f"{tuple(tensor.shape)} weight) and offers no way to unpack it")


def apply_entries(w: torch.Tensor, entries: Sequence[PatchEntry]) -> torch.Tensor:
    """``w`` (float32) with the patch entries applied in order; never modifies ``w`` in place."""
    for strength, patch, strength_model in entries:
        if strength_model != 1.0:
            w = w * strength_model
        delta = patch(w) if callable(patch) else patch.to(device=w.device, dtype=torch.float32)
        w = w + strength * delta.reshape(w.shape)
    return w


class HandleWeight:
    """A patch whose value is another network's weight ``name`` with that handle's patches (as they were
    when taken) applied: ComfyUI's ``get_key_patches`` entry. The weight is read when the patch runs, on the
    receiving weight's device, so it follows the other network wherever its manager has put it.

    A weight of another shape (e.g. a 9-channel inpainting conv against a 4-channel one) contributes nothing,
    as in ComfyUI ("weight not merged"); the receiving handle's ``strength_model`` still applies.
    """

    def __init__(self, module: nn.Module, name: str, entries: Sequence[PatchEntry]) -> None:
        self.module = module
        self.name = name
        self.entries = tuple(entries)

    def value(self, device: torch.device | None = None) -> torch.Tensor:
        """The other handle's patched weight in float32."""
        base = self.module.get_parameter(self.name).detach()
        return apply_entries(base.to(device=device or base.device, dtype=torch.float32), self.entries)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        other = self.value(w.device)
        if other.shape != w.shape:
            log.warning("merge: %s has shape %s here and %s in the other model; not merged", self.name,
                        tuple(w.shape), tuple(other.shape))
            return torch.zeros_like(w)
        return other


class Patchable:
    """What the MODEL and CLIP handles keep as ComfyUI's ModelPatcher does: weight ``patches``, ``model_options``,
    ``object_patches`` (attributes of the network replaced while the handle runs), the ``wrappers`` / ``callbacks``
    registries (the MODEL applies and runs these), ``attachments`` (objects packs keep on a model by key; one
    with ``on_model_patcher_clone()`` gives each clone its own), ``additional_models`` ({key: [models]}) and
    ``injections`` ({key: [objects with inject(model) / eject(model)]}, run around each sampling of the MODEL),
    copied by each clone (``_copy_patcher_state_to``).

    ``_prefixes``: prefixes a patch key may carry before the network's own parameter name;
    ``_key_prefix``: the one ``get_key_patches`` puts on its keys (ComfyUI's state-dict names).
    """

    _prefixes: tuple[str, ...] = ()
    _key_prefix: str = ""

    def __init__(self) -> None:
        self.patches: dict[str, list[PatchEntry]] = {}
        self._patched: dict[str, torch.Tensor] | None = None
        self.model_options: dict[str, Any] = {}
        self.object_patches: dict[str, Any] = {}
        self.wrappers: Registry = {}  # ComfyUI's {type: {key: [fn, ...]}} (run by the compatibility layer)
        self.callbacks: Registry = {}
        self.attachments: dict[str, Any] = {}  # ComfyUI's: objects packs keep on a handle for their own wrappers
        self.additional_models: dict[Any, list[Any]] = {}  # engine.module_patcher
        self.injections: dict[Any, list[Any]] = {}

    def set_attachments(self, key: str, attachment: Any) -> None:
        """Keep `attachment` under `key` (ComfyUI's; Loom's sampler never reads it, the pack's wrappers may)."""
        self.attachments[key] = attachment

    def get_attachment(self, key: str) -> Any:
        """The attachment under `key`, or None."""
        return self.attachments.get(key)

    def remove_attachments(self, key: str) -> None:
        self.attachments.pop(key, None)

    def _module(self) -> nn.Module:
        raise NotImplementedError

    def _normalise_key(self, key: str, names: set[str]) -> str | None:
        for prefix in ("", *self._prefixes):
            if key.startswith(prefix) and key[len(prefix):] in names:
                return key[len(prefix):]
        return None

    def add_patches(self, patches: dict[str, Any], strength_patch: float = 1.0,
                    strength_model: float = 1.0) -> list[str]:
        """Record patches (applied when the handle runs); returns the keys that matched a weight (a packed
        weight no unpacker knows: ValueError naming it, module docstring)."""
        module = self._module()
        params = dict(module.named_parameters())
        names = set(params)
        added = []
        for key, patch in patches.items():
            name = self._normalise_key(key, names)
            if name is None:
                continue
            _unpacker_for(module, name, params[name])  # a packed weight nothing can unpack is refused here
            self.patches.setdefault(name, []).append((strength_patch, _as_patch(key, patch), strength_model))
            added.append(key)
        self._patched = None
        return added

    def get_key_patches(self, filter_prefix: str | None = None) -> dict[str, Patch]:
        """ComfyUI's ``get_key_patches``: for every weight (key = ``_key_prefix`` + name, only those starting
        with ``filter_prefix``), a patch whose value is this handle's weight with its current patches applied."""
        module = self._module()
        out: dict[str, Patch] = {}
        for name, _ in module.named_parameters():
            key = self._key_prefix + name
            if filter_prefix is not None and not key.startswith(filter_prefix):
                continue
            out[key] = HandleWeight(module, name, self.patches.get(name, ()))
        return out

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
            unpack = _unpacker_for(module, name, base)
            if unpack is None:
                out[name] = apply_entries(base.detach().float(), entries).to(base.dtype)
            else:  # the patched plain float32 weight stands in for the packed one
                out[name] = apply_entries(unpack().detach().float(), entries)
        self._patched = out
        return out

    def patch_signature(self) -> tuple[tuple[str, float, int, float], ...]:
        """Identity of the recorded patches (for caches of things derived from the patched weights)."""
        return tuple((name, strength, id(patch), strength_model)
                     for name, entries in sorted(self.patches.items()) for strength, patch, strength_model in entries)

    def patched_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's state dict with this handle's patches baked in (stored dtypes, on the CPU): what a
        save node writes. Computed weight by weight, so no second full float32 copy is held."""
        module = self._module()
        params = dict(module.named_parameters())
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, value in module.state_dict().items():
                entries = self.patches.get(name)
                if entries and name in params:
                    value = apply_entries(params[name].detach().float(), entries).to(params[name].dtype)
                out[name] = value.detach().to("cpu").contiguous()
        return out

    def _copy_patcher_state_to(self, other: Patchable) -> None:
        other.patches = {k: list(v) for k, v in self.patches.items()}
        other._patched = None
        other.model_options = copy.deepcopy(self.model_options)
        other.object_patches = dict(self.object_patches)
        other.wrappers, other.callbacks = _copy_registry(self.wrappers), _copy_registry(self.callbacks)
        # as ComfyUI's clone: an attachment may give the clone its own copy
        other.attachments = {key: value.on_model_patcher_clone() if hasattr(value, "on_model_patcher_clone") else value
                             for key, value in self.attachments.items()}
        other.additional_models = {key: list(models) for key, models in self.additional_models.items()}
        other.injections = {key: list(items) for key, items in self.injections.items()}
