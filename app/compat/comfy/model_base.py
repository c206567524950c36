"""ComfyUI's `comfy.model_base` for packs: the classes `ModelPatcher.model` is an instance of, for family checks
such as `isinstance(model.model, comfy.model_base.SDXL)` (views over Loom's MODEL handle, `engine.model_base`)."""
from __future__ import annotations

from engine.model_base import SD21UNCLIP, SDXL, BaseModel, SDXLRefiner
from engine.model_configs import ModelType

__all__ = ["BaseModel", "SDXL", "SDXLRefiner", "SDXL_instructpix2pix", "SD21UNCLIP", "SDXLUnclip", "ModelType",
           "CosmosPredict2", "Anima"]


class SDXL_instructpix2pix(SDXL):  # noqa: N801  (ComfyUI's name) not built by Loom: nothing is an instance
    """An SDXL InstructPix2Pix model (not supported by Loom)."""


class SDXLUnclip(SDXL):
    """An SDXL unCLIP model (not supported by Loom)."""


class CosmosPredict2(BaseModel):
    """A Cosmos Predict2 model (not loaded by Loom: nothing is an instance; tooling-nodes' region checks)."""


class Anima(CosmosPredict2):
    """An Anima model (not loaded by Loom: nothing is an instance)."""
