"""ComfyUI's `comfy.patcher_extension` for packs: the callback / wrapper types (`CallbacksMP`, `WrappersMP`), the
readers of ComfyUI's registries in a `transformer_options` dict (`get_*`, layout ``{type: {key: [fn, ...]}}``),
`WrapperExecutor` (calls a wrapper chain around a function), `PatcherInjection` and the nested-dict helpers.

`add_wrapper(_with_key)` writes into a `transformer_options` / `model_options` dict as ComfyUI's does; Loom's
sampler runs the types in `app/compat/_model_wrappers.RUNNABLE_WRAPPERS` from there and from the MODEL's own
registry. Other types (`prepare_sampling`) are refused with an error naming the type, rather than stored and never
called. Callbacks in a dict are never called (ComfyUI calls a MODEL's own), so `add_callback(_with_key)` here is
refused: register them on the MODEL (the types in `RUNNABLE_CALLBACKS`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.compat._model_wrappers import RUNNABLE_CALLBACKS, check_runnable

__all__ = ["CallbacksMP", "PatcherInjection", "WrapperExecutor", "WrappersMP", "add_callback",
           "add_callback_with_key", "add_wrapper", "add_wrapper_with_key", "copy_nested_dicts",
           "get_all_callbacks", "get_all_wrappers", "get_callbacks_with_key", "get_wrappers_with_key",
           "merge_nested_dicts"]

Registry = dict[str, dict[Any, list[Callable[..., Any]]]]


class CallbacksMP:
    """ComfyUI's model-patcher callback types (the keys of ``transformer_options["callbacks"]``)."""

    ON_CLONE = "on_clone"
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
    ON_CLEANUP = "on_cleanup"
    ON_PRE_RUN = "on_pre_run"
    ON_PREPARE_STATE = "on_prepare_state"
    ON_APPLY_HOOKS = "on_apply_hooks"
    ON_REGISTER_ALL_HOOK_PATCHES = "on_register_all_hook_patches"
    ON_INJECT_MODEL = "on_inject_model"
    ON_EJECT_MODEL = "on_eject_model"

    @classmethod
    def init_callbacks(cls) -> Registry:
        """An empty callback registry."""
        return {}


class WrappersMP:
    """ComfyUI's wrapper types (the keys of ``transformer_options["wrappers"]``)."""

    OUTER_SAMPLE = "outer_sample"
    PREPARE_SAMPLING = "prepare_sampling"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"
    CALC_COND_BATCH = "calc_cond_batch"
    APPLY_MODEL = "apply_model"
    DIFFUSION_MODEL = "diffusion_model"

    @classmethod
    def init_wrappers(cls) -> Registry:
        """An empty wrapper registry."""
        return {}


def _options(transformer_options: dict[str, Any], is_model_options: bool) -> dict[str, Any]:
    if not is_model_options:
        return transformer_options
    return transformer_options.get("transformer_options", {})  # type: ignore[no-any-return]


def _refuse_callback(kind: str) -> None:
    raise NotImplementedError(f"a ComfyUI model callback ({kind!r}) in a transformer_options dict: Loom's sampler "
                              "does not call those; register it on the MODEL (model.add_callback_with_key) for "
                              f"the types it calls ({', '.join(RUNNABLE_CALLBACKS)})")


def _registry_for(transformer_options: dict[str, Any], is_model_options: bool) -> Registry:
    if is_model_options:
        transformer_options = transformer_options.setdefault("transformer_options", {})
    return transformer_options.setdefault("wrappers", {})  # type: ignore[no-any-return]


def _with_key(section: str, kind: str, key: Any, transformer_options: dict[str, Any],
              is_model_options: bool) -> list[Callable[..., Any]]:
    registry: Registry = _options(transformer_options, is_model_options).get(section, {})
    return list(registry.get(kind, {}).get(key, []))


def _all(section: str, kind: str, transformer_options: dict[str, Any],
         is_model_options: bool) -> list[Callable[..., Any]]:
    registry: Registry = _options(transformer_options, is_model_options).get(section, {})
    return [fn for fns in registry.get(kind, {}).values() for fn in fns]


def add_callback(call_type: str, callback: Callable[..., Any], transformer_options: dict[str, Any],
                 is_model_options: bool = False) -> None:
    """Refused: Loom calls no callbacks kept in a dict (module docstring)."""
    _refuse_callback(call_type)


def add_callback_with_key(call_type: str, key: str | None, callback: Callable[..., Any],
                          transformer_options: dict[str, Any], is_model_options: bool = False) -> None:
    """Refused: Loom calls no callbacks kept in a dict (module docstring)."""
    _refuse_callback(call_type)


def get_callbacks_with_key(call_type: str, key: str | None, transformer_options: dict[str, Any],
                           is_model_options: bool = False) -> list[Callable[..., Any]]:
    """The callbacks registered for ``call_type`` under ``key`` (a new list)."""
    return _with_key("callbacks", call_type, key, transformer_options, is_model_options)


def get_all_callbacks(call_type: str, transformer_options: dict[str, Any],
                      is_model_options: bool = False) -> list[Callable[..., Any]]:
    """Every callback registered for ``call_type``, keys in insertion order."""
    return _all("callbacks", call_type, transformer_options, is_model_options)


def add_wrapper(wrapper_type: str, wrapper: Callable[..., Any], transformer_options: dict[str, Any],
                is_model_options: bool = False) -> None:
    """`add_wrapper_with_key` under the key None."""
    add_wrapper_with_key(wrapper_type, None, wrapper, transformer_options, is_model_options)


def add_wrapper_with_key(wrapper_type: str, key: str | None, wrapper: Callable[..., Any],
                         transformer_options: dict[str, Any], is_model_options: bool = False) -> None:
    """Append `wrapper` to `transformer_options["wrappers"][wrapper_type][key]` (`model_options`' own
    `transformer_options` when `is_model_options`); a type Loom's sampler does not run is refused."""
    check_runnable("wrapper", wrapper_type)
    _registry_for(transformer_options, is_model_options).setdefault(wrapper_type, {}).setdefault(key, []).append(
        wrapper)


def get_wrappers_with_key(wrapper_type: str, key: str | None, transformer_options: dict[str, Any],
                          is_model_options: bool = False) -> list[Callable[..., Any]]:
    """The wrappers registered for ``wrapper_type`` under ``key`` (a new list)."""
    return _with_key("wrappers", wrapper_type, key, transformer_options, is_model_options)


def get_all_wrappers(wrapper_type: str, transformer_options: dict[str, Any],
                     is_model_options: bool = False) -> list[Callable[..., Any]]:
    """Every wrapper registered for ``wrapper_type``, keys in insertion order."""
    return _all("wrappers", wrapper_type, transformer_options, is_model_options)


class WrapperExecutor:
    """Calls ``wrappers[idx]`` with itself as the first argument; calling the executor it was given runs the next
    wrapper, and past the last one ``original``. ``class_obj`` is the object whose method is wrapped."""

    def __init__(self, original: Callable[..., Any], class_obj: object, wrappers: list[Callable[..., Any]],
                 idx: int) -> None:
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.idx = idx
        self.is_last = idx == len(self.wrappers)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the rest of the chain (what a wrapper calls)."""
        return self._create_next_executor().execute(*args, **kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Start the chain at this executor's wrapper."""
        if self.is_last:
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)

    def _create_next_executor(self) -> WrapperExecutor:
        if self.idx + 1 > len(self.wrappers):
            raise IndexError(f"WrapperExecutor: no wrapper after index {self.idx} of {len(self.wrappers)}")
        return type(self)(self.original, self.class_obj, self.wrappers, self.idx + 1)

    @classmethod
    def new_executor(cls, original: Callable[..., Any], wrappers: list[Callable[..., Any]],
                     idx: int = 0) -> WrapperExecutor:
        """An executor for a plain function."""
        return cls(original, None, wrappers, idx)

    @classmethod
    def new_class_executor(cls, original: Callable[..., Any], class_obj: object,
                           wrappers: list[Callable[..., Any]], idx: int = 0) -> WrapperExecutor:
        """An executor for a method of ``class_obj`` (wrappers read it as ``executor.class_obj``)."""
        return cls(original, class_obj, wrappers, idx)


class PatcherInjection:
    """A pair of functions that put something into a model and take it out again."""

    def __init__(self, inject: Callable[..., Any], eject: Callable[..., Any]) -> None:
        self.inject = inject
        self.eject = eject


def copy_nested_dicts(input_dict: dict[Any, Any]) -> dict[Any, Any]:
    """A copy in which nested dicts are copied recursively and lists shallowly."""
    copied = dict(input_dict)
    for key, value in input_dict.items():
        if isinstance(value, dict):
            copied[key] = copy_nested_dicts(value)
        elif isinstance(value, list):
            copied[key] = list(value)
    return copied


def merge_nested_dicts(dict1: dict[Any, Any], dict2: dict[Any, Any], copy_dict1: bool = True) -> dict[Any, Any]:
    """``dict1`` (copied unless ``copy_dict1`` is False) with ``dict2`` merged in: lists are extended, nested
    dicts merged (``dict2``'s entries first), other values replaced."""
    merged = copy_nested_dicts(dict1) if copy_dict1 else dict1
    for key, value in dict2.items():
        if isinstance(value, dict):
            merged[key] = merge_nested_dicts(value, merged.setdefault(key, {}))
        elif isinstance(value, list):
            merged.setdefault(key, []).extend(value)
        else:
            merged[key] = value
    return merged
