"""ComfyUI's `comfy.model_base` for packs: the model classes, as `isinstance` stand-ins over Loom's families.

`isinstance(m, comfy.model_base.SDXL)` is true for a Loom MODEL handle (or anything with a `family`) of the
SDXL family; `BaseModel` matches every Loom model. The classes cannot be instantiated: Loom builds models
with `engine.loading`. `ModelType` is ComfyUI's prediction-type enum.
"""
from __future__ import annotations

from enum import Enum

from app.compat._family_types import model_family_type

__all__ = ["BaseModel", "ModelType", "SD15", "SD20", "SDXL", "SDXLRefiner", "SDXL_instructpix2pix"]


class ModelType(Enum):
    """ComfyUI's prediction types."""

    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9


BaseModel = model_family_type("BaseModel", __name__, None)
SD15 = model_family_type("SD15", __name__, frozenset({"sd15"}))
SD20 = model_family_type("SD20", __name__, frozenset({"sd20"}))
SDXL = model_family_type("SDXL", __name__, frozenset({"sdxl"}))
SDXLRefiner = model_family_type("SDXLRefiner", __name__, frozenset({"sdxl_refiner"}))
SDXL_instructpix2pix = model_family_type("SDXL_instructpix2pix", __name__, frozenset())
