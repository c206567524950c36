"""Networks built on the meta device, and a per-process cache of their skeletons.

A loader builds a network with no memory and no random init (``meta_build``) and then adopts the file's
tensors as its parameters (``engine.loading``). Building is pure Python object construction: about 1,150
``nn.Module`` objects for an SD1.5 checkpoint, ~60 ms, longer than reading the file's header and mapping
its 4 GB. Every network built from the same constructor arguments has the same structure, so the first build
is kept as a *skeleton* and later builds are structural copies of it: each module is a new object with its
own ``__dict__`` and containers (parameters, hooks, children), made without running any constructor.
Switching between checkpoints of one architecture (SD1.5 fine-tunes) then costs ~3 ms instead of ~60 ms;
``prewarm_skeletons`` builds SD1.5's skeletons in the server's start-up thread.

Only modules whose attributes are plain values (numbers, strings, dtypes, tuples, classes, functions) or
torch's per-module containers are copied this way; a network with anything else (a list of layers kept
outside ``_modules``, a tensor attribute) is built afresh every time.
"""
from __future__ import annotations

import threading
import types
from collections.abc import Hashable
from typing import Any

import torch
from torch import nn

__all__ = ["BASE_OF", "meta_ops", "meta_build", "prewarm_skeletons", "clear_skeletons"]

# a meta-ops layer class -> the torch layer it stands in for (the adopting walk sets it back)
BASE_OF: dict[type, type[nn.Module]] = {}
_META_OPS: dict[Any, Any] = {}


def _skip_init(base: type[nn.Module]) -> type[nn.Module]:
    """A subclass of a torch layer whose constructor leaves its (meta) parameters uninitialised; modules built
    from it get their class set back to ``base`` once built, so the finished network has plain torch layers."""
    sub = type(base.__name__, (base,), {"reset_parameters": lambda self: None, "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})
    BASE_OF[sub] = base
    return sub


def meta_ops(ops: Any) -> Any:
    """``ops`` (Plain / ManualCast) with layers that skip random init (meaningless on the meta device)."""
    cached = _META_OPS.get(ops)
    if cached is None:
        cached = type(f"_Meta{ops.__name__}", (ops,), {n: _skip_init(getattr(ops, n))
                                                         for n in ("Linear", "Conv2d", "GroupNorm", "LayerNorm")})
        _META_OPS[ops] = cached
    return cached


_INIT_FUNCS = frozenset(getattr(nn.init, n) for n in (
    "uniform_", "normal_", "trunc_normal_", "constant_", "kaiming_uniform_", "kaiming_normal_",
    "xavier_uniform_", "xavier_normal_", "orthogonal_", "sparse_") if hasattr(nn.init, n))


class _SkipMetaInit(torch.overrides.TorchFunctionMode):
    """While a network is built (this thread only): ``torch.nn.init`` calls on meta tensors return at once.
    Initialising a meta tensor has no effect anyway, but costs ~0.1 ms per call in torch's Python meta
    kernels; this covers layers built from ``torch.nn`` directly (the text towers)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _INIT_FUNCS:
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


def _construct(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any], skip_init_mode: bool) -> nn.Module:
    if skip_init_mode:
        with _SkipMetaInit():
            module: nn.Module = factory(*args, device="meta", **kwargs)
    else:
        module = factory(*args, device="meta", **kwargs)
    return module


# ---- skeletons ----------------------------------------------------------------------------------------------
_PLAIN = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device, type, types.FunctionType,
          types.BuiltinFunctionType, range, slice)
_CONTAINERS = (dict, set, list)  # torch's per-module state: _parameters, hook dicts, _non_persistent_buffers_set


def _plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_plain(v) for v in value)
    if isinstance(value, torch.Size):
        return True
    params = getattr(type(value), "__dataclass_params__", None)  # a frozen dataclass (a network config)
    return bool(params is not None and params.frozen)


def _copyable(root: nn.Module) -> bool:
    """Whether structural copies of ``root`` share nothing mutable with it (see the module docstring)."""
    for m in root.modules():
        for name, value in m.__dict__.items():
            if name == "_modules":
                continue
            if name in ("_parameters", "_buffers"):
                if any(t is not None and not t.is_meta for t in value.values()):
                    return False
                continue
            if isinstance(value, _CONTAINERS):
                if any(not _plain(v) for v in (value.values() if isinstance(value, dict) else value)):
                    return False
            elif not _plain(value):
                return False
    return True


_Plan = list[tuple[type, dict[str, Any], tuple[str, ...], tuple[tuple[str, int], ...]]]


def _plan(root: nn.Module) -> _Plan:
    """Each module of ``root`` in order: class, attributes, names of its containers, (child name, index)."""
    order = list(root.modules())  # each module once, even when it is reachable twice
    index = {id(m): i for i, m in enumerate(order)}
    return [(type(m), m.__dict__, tuple(k for k, v in m.__dict__.items()
                                       if isinstance(v, _CONTAINERS) and k != "_modules"),
             tuple((name, index[id(c)]) for name, c in m._modules.items() if c is not None)) for m in order]


def _copy(plan: _Plan) -> nn.Module:
    """A new module tree of the same classes and attributes: own containers, own children, no constructor."""
    news: list[nn.Module] = [object.__new__(cls) for cls, _, _, _ in plan]
    for new, (_, attrs, containers, children) in zip(news, plan, strict=True):
        state = attrs.copy()
        for name in containers:
            state[name] = state[name].copy()  # an OrderedDict stays an OrderedDict
        modules = state["_modules"] = state["_modules"].copy()
        for name, i in children:
            modules[name] = news[i]
        new.__dict__.update(state)
    return news[0]


_skeletons: dict[Hashable, _Plan | None] = {}  # None: not copyable, always build
_lock = threading.Lock()


def _key(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any], skip_init_mode: bool) -> Hashable | None:
    key = (factory, args, tuple(sorted(kwargs.items())), skip_init_mode)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def meta_build(factory: Any, *args: Any, skip_init_mode: bool = False, **kwargs: Any) -> nn.Module:
    """Build a network on the meta device: no memory, no random init (the file's tensors replace it all).

    ``skip_init_mode`` also skips ``torch.nn.init`` calls of layers built from ``torch.nn`` directly. The first
    build per constructor arguments is kept as a skeleton and later ones are copies of it (module docstring).
    Layers of ``meta_ops`` keep their stand-in class; the adopting walk sets ``BASE_OF`` back.
    """
    key = _key(factory, args, kwargs, skip_init_mode)
    if key is None:
        return _construct(factory, args, kwargs, skip_init_mode)
    with _lock:
        if key not in _skeletons:
            built = _construct(factory, args, kwargs, skip_init_mode)
            _skeletons[key] = _plan(built) if _copyable(built) else None
        plan = _skeletons[key]
    if plan is None:
        return _construct(factory, args, kwargs, skip_init_mode)
    return _copy(plan)


def clear_skeletons() -> None:
    """Forget every kept skeleton (tests; they hold no tensor memory, only Python objects)."""
    with _lock:
        _skeletons.clear()


def prewarm_skeletons() -> None:
    """Build the skeletons of SD1.5's networks (UNet, VAE, CLIP-L) so the first checkpoint load is fast too."""
    from engine.families import SD15
    from engine.networks.configs import ClipTextConfig, UNetConfig, VAEConfig
    from engine.networks.ops import Plain
    from engine.networks.text_encoders import ClipTextEncoder
    from engine.networks.unet import UNetModel
    from engine.networks.vae import AutoencoderKL

    ops = meta_ops(Plain)
    meta_build(UNetModel, UNetConfig(), operations=ops)
    meta_build(AutoencoderKL, VAEConfig(), operations=ops)
    for spec in SD15.text_encoders:
        meta_build(ClipTextEncoder, ClipTextConfig(), layer_norm_hidden_state=spec.norm_hidden,
                   default_layer=spec.default_layer, skip_init_mode=True)
