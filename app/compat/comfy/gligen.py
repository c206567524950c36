"""ComfyUI's `comfy.gligen` for packs: `Gligen` (Loom's GLIGEN model class, `engine.gligen.Gligen`, for
`isinstance` and patching) and `load_gligen(state_dict)`, which builds one from a GLIGEN state dict as
GLIGENLoader does from a file."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.gligen import Gligen, gligen_from_state_dict

__all__ = ["Gligen", "load_gligen"]


def load_gligen(sd: Mapping[str, Any]) -> Gligen:
    """A GLIGEN model from a state dict (``*.fuser.*`` and ``position_net.*`` tensors)."""
    return gligen_from_state_dict(sd, source="comfy.gligen.load_gligen")
