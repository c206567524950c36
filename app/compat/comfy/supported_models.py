"""ComfyUI's `comfy.supported_models` for packs: one config class per model family Loom loads, under ComfyUI's
names (SD15, SD20, SDXL, SDXLRefiner, SD3, Flux, FluxSchnell), each a view of the `engine.families` entry;
`models` lists them. Families Loom does not load are absent."""
from __future__ import annotations

from typing import Any

from comfy.supported_models_base import BASE

from engine import families

__all__ = ["SD15", "SD20", "SDXL", "SDXLRefiner", "SD3", "Flux", "FluxSchnell", "models"]


def _config(name: str, family: families.Family) -> type[BASE]:
    attrs: dict[str, Any] = {"__module__": __name__, "family": family, "latent_format": family.latent_format,
                             "sampling_settings": {"prediction": family.prediction},
                             "__doc__": f"Loom's {family.name} family (engine.families)."}
    return type(name, (BASE,), attrs)


SD15 = _config("SD15", families.SD15)
SD20 = _config("SD20", families.SD20)
SDXL = _config("SDXL", families.SDXL)
SDXLRefiner = _config("SDXLRefiner", families.SDXL_REFINER)
SD3 = _config("SD3", families.SD35)
Flux = _config("Flux", families.FLUX_DEV)
FluxSchnell = _config("FluxSchnell", families.FLUX_SCHNELL)

models = [SD15, SD20, SDXL, SDXLRefiner, SD3, Flux, FluxSchnell]
