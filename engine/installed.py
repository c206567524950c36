"""Process-wide lists of functions installed into the engine from outside it (the ComfyUI compatibility layer's
sampler wrappers and weight unpackers): one way to install and remove them, and to run a chain of wrappers."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["install_once", "through_wrappers"]

F = TypeVar("F")
V = TypeVar("V")
R = TypeVar("R")


def install_once(installed: list[F], function: F) -> Callable[[], None]:
    """Append ``function`` to ``installed`` unless it is there; returns the function that removes it again."""
    if function not in installed:
        installed.append(function)

    def remove() -> None:
        if function in installed:
            installed.remove(function)
    return remove


def through_wrappers(wrappers: list[Callable[..., R]], inner: Callable[[V], R], value: V) -> R:
    """``inner(value)`` through ``wrappers`` (the last installed outermost): each is called ``wrapper(value,
    proceed)``, where ``proceed(replaced=None)`` runs the rest of the chain on ``replaced`` or, by default, on the
    value the wrapper was given."""
    proceed = inner
    for wrapper in list(wrappers):
        proceed = _bound(wrapper, proceed)
    return proceed(value)


def _bound(wrapper: Callable[..., R], inner: Callable[[V], R]) -> Callable[[V], R]:
    def call(value: V) -> R:
        def proceed(replaced: V | None = None) -> R:
            return inner(value if replaced is None else replaced)
        return wrapper(value, proceed)
    return call
