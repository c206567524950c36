"""ComfyUI's `comfy.model_base` for packs: the classes `ModelPatcher.model` is an instance of, for family checks
such as `isinstance(model.model, comfy.model_base.SDXL)` (views over Loom's MODEL handle, `engine.model_base`),
`ModelType` (`model.model.model_type`) and `model_sampling(model_config, model_type)`."""
from __future__ import annotations

from typing import Any

import comfy.model_sampling as _sampling

from engine.model_base import SD21UNCLIP, SDXL, BaseModel, SDXLRefiner
from engine.model_configs import ModelType

__all__ = ["BaseModel", "SDXL", "SDXLRefiner", "SDXL_instructpix2pix", "SD21UNCLIP", "SDXLUnclip", "SVD_img2vid",
           "ModelType", "model_sampling", "CosmosPredict2", "Anima"]


class SDXL_instructpix2pix(SDXL):  # noqa: N801  (ComfyUI's name) not built by Loom: nothing is an instance
    """An SDXL InstructPix2Pix model (not supported by Loom)."""


class SDXLUnclip(SDXL):
    """An SDXL unCLIP model (not supported by Loom)."""


class SVD_img2vid(BaseModel):  # noqa: N801  (ComfyUI's name) not built by Loom: nothing is an instance
    """A Stable Video Diffusion image-to-video model (not supported by Loom)."""


_PREDICTIONS: dict[ModelType, type[_sampling.EPS]] = {ModelType.EPS: _sampling.EPS,
                                                       ModelType.V_PREDICTION: _sampling.V_PREDICTION}


def model_sampling(model_config: Any, model_type: ModelType) -> _sampling.ModelSamplingDiscrete:
    """A discrete schedule from ``model_config.sampling_settings`` with ``model_type``'s prediction (ComfyUI's
    function; Loom builds the discrete EPS / V_PREDICTION kinds, other kinds raise naming the type)."""
    prediction = _PREDICTIONS.get(model_type)
    if prediction is None:
        raise NotImplementedError(f"comfy.model_base.model_sampling: Loom builds discrete EPS / V_PREDICTION schedules "
                                  f"here, not {model_type!r}")
    cls = type("ModelSampling", (_sampling.ModelSamplingDiscrete, prediction), {})
    built: _sampling.ModelSamplingDiscrete = cls(model_config)
    return built


class CosmosPredict2(BaseModel):
    """A Cosmos Predict2 model (not loaded by Loom: nothing is an instance; tooling-nodes' region checks)."""


class Anima(CosmosPredict2):
    """An Anima model (not loaded by Loom: nothing is an instance)."""
