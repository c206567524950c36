"""Classes that stand for ComfyUI's model classes (text encoders, control networks) in `isinstance` checks,
answered from Loom's objects.

Packs test `isinstance(clip.cond_stage_model, comfy.sdxl_clip.SDXLClipModel)` to choose a code path. Loom has
no such class hierarchy: a CLIP's towers are named `clip_l` / `clip_g` / `clip_h` in one `TextEncoderSet`.
The classes made here answer those checks from that data; they cannot be instantiated.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _FamilyMeta(type):
    _loom_test: Callable[[Any], bool]

    def __instancecheck__(cls, obj: Any) -> bool:
        return bool(cls._loom_test(obj))

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__module__}.{cls.__name__} stands for a ComfyUI model class in isinstance checks; "
                        f"Loom builds its models with engine.loading (see docs/custom-nodes.md)")


def towers_type(name: str, module: str, required: frozenset[str], exact: bool) -> type:
    """A class matching a CLIP tower set holding `required` towers (only those when `exact`)."""

    def test(obj: Any) -> bool:
        keys = set(getattr(obj, "keys", lambda: ())())
        return required <= keys and (not exact or keys == required)

    return _FamilyMeta(name, (), {"__module__": module, "_loom_test": staticmethod(test),
                                  "__doc__": f"isinstance stand-in: CLIP tower sets with {sorted(required)}"})


def class_name_type(name: str, module: str, class_names: frozenset[str]) -> type:
    """A class matching objects whose class is one of Loom's `class_names` (a single CLIP tower)."""

    def test(obj: Any) -> bool:
        return type(getattr(obj, "tower", obj)).__name__ in class_names  # a tower, or a CLIP's tower encoder

    return _FamilyMeta(name, (), {"__module__": module, "_loom_test": staticmethod(test),
                                  "__doc__": f"isinstance stand-in: Loom's {sorted(class_names)}"})


def predicate_type(name: str, module: str, test: Callable[[Any], bool], matches: str) -> type:
    """A class matching the objects `test` accepts (`matches` says which, for its docstring)."""
    return _FamilyMeta(name, (), {"__module__": module, "_loom_test": staticmethod(test),
                                  "__doc__": f"isinstance stand-in: {matches}"})
