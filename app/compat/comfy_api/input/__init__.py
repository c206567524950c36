"""`comfy_api.input` (ComfyUI keeps it for older packs): the input type names, `VideoInput` among them."""
from __future__ import annotations

import torch

from engine.video import VideoInput

ImageInput = torch.Tensor
MaskInput = torch.Tensor
AudioInput = dict
LatentInput = dict

__all__ = ["ImageInput", "MaskInput", "AudioInput", "LatentInput", "VideoInput"]
