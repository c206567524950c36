"""ComfyUI's `comfy.ldm.modules.diffusionmodules.openaimodel` for packs: the SD UNet class is Loom's own.

`UNetModel` is `engine.networks.unet.UNetModel` (for `isinstance` checks and reading its config); packs
that wrap or rebuild the UNet from ComfyUI's constructor arguments need Loom's `UNetConfig` instead.
"""
from __future__ import annotations

from typing import Any

from engine.networks.attention import SpatialTransformer
from engine.networks.unet import Downsample, ResBlock, TimestepEmbedSequential, UNetModel, Upsample

__all__ = ["Downsample", "ResBlock", "SpatialTransformer", "TimestepEmbedSequential", "UNetModel", "Upsample",
           "VideoResBlock"]


class VideoResBlock(ResBlock):
    """ComfyUI's SVD ResBlock: subclassable for packs, not buildable (Loom has no video UNet)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("comfy.ldm.modules.diffusionmodules.openaimodel.VideoResBlock: Loom has no video "
                                  "(SVD) UNet")
