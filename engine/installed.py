"""Process-wide lists of functions installed into the engine from outside it (the ComfyUI compatibility layer's
sampler wrappers and weight unpackers): one way to install and remove them."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["install_once"]

F = TypeVar("F")


def install_once(installed: list[F], function: F) -> Callable[[], None]:
    """Append ``function`` to ``installed`` unless it is there; returns the function that removes it again."""
    if function not in installed:
        installed.append(function)

    def remove() -> None:
        if function in installed:
            installed.remove(function)
    return remove
