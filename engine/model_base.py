"""Views of a MODEL handle named like ComfyUI's ``comfy.model_base`` classes (``ModelPatcher.model``).

Packs test the family with ``isinstance(model.model, comfy.model_base.SDXL)`` and read
``model.model.diffusion_model`` / ``.model_sampling`` / ``.latent_format``; ``ModelHandle.model`` returns one of
these views (the compatibility layer exports the classes under ComfyUI's names). SD1.x and SD2.x models are
plain ``BaseModel`` instances there, as here.
"""
from __future__ import annotations

from typing import Any

import torch

from engine.model_call import NETWORK_INPUTS
from engine.model_configs import ModelType, config_for

__all__ = ["BaseModel", "SDXL", "SDXLRefiner", "SD21UNCLIP", "model_view"]


def _model_type(model_sampling: Any) -> ModelType:
    """The ``ModelType`` of a Loom noise schedule (its ``prediction``; continuous / flow schedules by class)."""
    prediction = getattr(model_sampling, "prediction", "eps")
    name = type(model_sampling).__name__
    if prediction == "flow":
        return ModelType.FLUX if name == "ModelSamplingFlux" else ModelType.FLOW
    if name.startswith("ModelSamplingContinuous"):
        return {"v": ModelType.V_PREDICTION_CONTINUOUS if name.endswith("V") else ModelType.V_PREDICTION_EDM,
                "edm": ModelType.EDM}.get(prediction, ModelType.EPS)
    return ModelType.V_PREDICTION if prediction == "v" else ModelType.EPS


class BaseModel:
    """What ComfyUI's BaseModel offers packs, read from the handle (nothing is copied)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.diffusion_model = handle.diffusion_model
        self.model_sampling = handle.model_sampling
        self.latent_format = handle.latent_format
        self.model_type = _model_type(handle.model_sampling)
        self.model_config = config_for(handle.family)  # ComfyUI's family config (engine.model_configs)

    @property
    def handle(self) -> Any:
        """The MODEL handle this is a view of."""
        return self._handle

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's tensors under ComfyUI's state-dict names (``diffusion_model.<parameter>``); the shared
        weights themselves, without this handle's patches (as ComfyUI's module gives its unpatched weights)."""
        return {"diffusion_model." + k: v for k, v in self.diffusion_model.state_dict().items()}

    def get_dtype(self) -> torch.dtype:
        dtype: torch.dtype = self._handle.dtype
        return dtype

    @property
    def device(self) -> torch.device:
        device: torch.device = self._handle.load_device
        return device

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, c_concat: torch.Tensor | None = None,
                    c_crossattn: torch.Tensor | None = None, control: Any = None,
                    transformer_options: dict[str, Any] | None = None, **kwargs: Any) -> torch.Tensor:
        """ComfyUI's ``BaseModel.apply_model``: the denoised latent for ``x`` at sigma ``t`` (``y``: the ADM vector;
        ``ref_latents`` / ``ref_latents_method``: Flux Kontext's reference latents, in model space)."""
        inputs = {k: kwargs[k] for k in NETWORK_INPUTS if kwargs.get(k) is not None}
        denoised: torch.Tensor = self._handle.apply_model(x, t, context=c_crossattn, y=kwargs.get("y"), concat=c_concat,
                                                          transformer_options=transformer_options, control=control,
                                                          extra_inputs=inputs or None)
        return denoised

    def process_latent_in(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE latent -> diffusion-model space (the family's latent format)."""
        out: torch.Tensor = self.latent_format.process_in(latent)
        return out

    def process_latent_out(self, latent: torch.Tensor) -> torch.Tensor:
        """Diffusion-model space -> VAE latent."""
        out: torch.Tensor = self.latent_format.process_out(latent)
        return out


class SDXL(BaseModel):
    """An SDXL base model."""


class SDXLRefiner(BaseModel):
    """An SDXL refiner."""


class SD21UNCLIP(BaseModel):
    """An SD2.1 unCLIP model."""


_BY_FAMILY: dict[str, type[BaseModel]] = {"sdxl": SDXL, "sdxl_refiner": SDXLRefiner, "sd21_unclip": SD21UNCLIP}


def model_view(handle: Any) -> BaseModel:
    """The view class of the handle's family."""
    return _BY_FAMILY.get(handle.family.name, BaseModel)(handle)
