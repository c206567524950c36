"""Model-family configs named like ComfyUI's ``comfy.supported_models`` classes (``SD15``, ``SDXL``, ``Flux``, ...),
each a view of its ``engine.families`` entry: ``ModelPatcher.model.model_config`` is an instance of its family's,
which packs test with ``isinstance`` (Easy-Use's ``get_sd_version``). The compatibility layer exports them under
ComfyUI's names and adds the families Loom does not load (classes nothing is an instance of)."""
from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, ClassVar

from engine import families
from engine.families import Family

__all__ = ["ModelConfig", "ModelType", "CONFIGS", "config_for"]


class ModelType(Enum):
    """ComfyUI's prediction types (``comfy.model_base.ModelType``), values as ComfyUI numbers them."""

    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9
    FLOW_COSMOS = 10


class ModelConfig:
    """A model family's config: ``family`` (Loom's ``engine.families.Family``), ``latent_format``,
    ``sampling_settings``, ``unet_config``. ComfyUI's configs also detect and build models; Loom detects them from
    checkpoint keys (``engine.detect``) and builds them with ``engine.loading``, so these carry the family's facts."""

    family: ClassVar[Family | None] = None
    unet_extra_config: ClassVar[dict[str, Any]] = {"num_heads": -1, "num_head_channels": 64}
    sampling_settings: ClassVar[dict[str, Any]] = {}
    latent_format: ClassVar[Any] = None

    def __init__(self, unet_config: dict[str, Any] | None = None) -> None:
        self.unet_config: dict[str, Any] = dict(unet_config or {})

    @classmethod
    def matches(cls, unet_config: dict[str, Any], state_dict: Any = None) -> bool:
        """ComfyUI detects families from UNet configs; Loom detects them from checkpoint keys (engine.detect)."""
        return False

    def model_type(self, state_dict: Mapping[str, Any] | None = None, prefix: str = "") -> ModelType:
        """The prediction type of a file of this family: a ``v_pred`` key marks a v-prediction file (as ComfyUI's
        SDXL config reads it); otherwise the family's default (SD2 768-v files are told apart when loading, from
        tensor values this method does not read)."""
        if state_dict is not None and "v_pred" in state_dict:
            return ModelType.V_PREDICTION
        prediction = self.family.prediction if self.family is not None else "eps"
        if prediction == "v":
            return ModelType.V_PREDICTION
        if prediction == "flow":
            return ModelType.FLUX if self.family is not None and self.family.name.startswith("flux") else ModelType.FLOW
        return ModelType.EPS


def _config(name: str, family: Family, base: type[ModelConfig] = ModelConfig) -> type[ModelConfig]:
    attrs: dict[str, Any] = {"__module__": __name__, "family": family, "latent_format": family.latent_format,
                             "sampling_settings": {"prediction": family.prediction},
                             "__doc__": f"Loom's {family.name} family (engine.families)."}
    return type(name, (base,), attrs)


_SD20 = _config("SD20", families.SD20)
_FLUX = _config("Flux", families.FLUX_DEV)
# ComfyUI's class name -> config, for the families Loom loads
CONFIGS: dict[str, type[ModelConfig]] = {
    "SD15": _config("SD15", families.SD15),
    "SD20": _SD20,
    "SD21UnclipH": _config("SD21UnclipH", families.SD21_UNCLIP, _SD20),
    "SDXL": _config("SDXL", families.SDXL),
    "SDXLRefiner": _config("SDXLRefiner", families.SDXL_REFINER),
    "SD3": _config("SD3", families.SD35),
    "Flux": _FLUX,
    "FluxSchnell": _config("FluxSchnell", families.FLUX_SCHNELL, _FLUX),
}
_BY_FAMILY = {cls.family.name: cls for cls in CONFIGS.values() if cls.family is not None}


def config_for(family: Family) -> ModelConfig:
    """The config of a family Loom loads (a family without one, e.g. a test's own, gets the plain base)."""
    return _BY_FAMILY.get(family.name, ModelConfig)()
