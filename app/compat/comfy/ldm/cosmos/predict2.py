"""ComfyUI's `comfy.ldm.cosmos.predict2` for packs: only `Attention`, for `isinstance` checks over a model's modules
(tooling-nodes' region attention looks for it). Loom loads no Cosmos model, so nothing is an instance of it."""
from __future__ import annotations

from torch import nn

__all__ = ["Attention"]


class Attention(nn.Module):
    """Cosmos Predict2's attention block (not built by Loom: constructing one is refused)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("comfy.ldm.cosmos.predict2.Attention is not provided by Loom: it loads no Cosmos "
                                  "Predict2 / Anima model")
