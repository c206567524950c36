"""ComfyUI's `comfy.gligen` for packs: the `Gligen` class name, which packs import to patch or test with
`isinstance`. Loom loads no GLIGEN models (GLIGENLoader / GLIGENTextBoxApply are not built in), so nothing is a
`Gligen`, it cannot be instantiated, and `load_gligen` raises."""
from __future__ import annotations

from typing import Any

from app.compat._family_types import predicate_type

__all__ = ["Gligen", "load_gligen"]

Gligen = predicate_type("Gligen", __name__, lambda obj: False, "nothing: Loom loads no GLIGEN model")


def load_gligen(sd: Any) -> Any:
    """ComfyUI builds a GLIGEN model from a state dict; Loom has no GLIGEN support."""
    raise NotImplementedError("comfy.gligen.load_gligen: Loom does not support GLIGEN models")
