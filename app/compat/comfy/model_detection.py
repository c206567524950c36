"""ComfyUI's `comfy.model_detection` for packs: which model family a state dict (or just its tensor shapes, as
read from a safetensors header) holds, through Loom's own detection (`engine.detect`, `engine.detect_flow`).

`detect_unet_config(state_dict, prefix)` gives the UNet / transformer hyper-parameters as a dict (Loom's
`UNetConfig` / `FluxConfig` / `MMDiTConfig` fields, and ComfyUI's `image_model` for the flow transformers) that
remembers the family it was detected as; `model_config_from_unet_config` turns such a dict into that family's
`comfy.supported_models` config (`SD15`, `SDXL`, `Flux`, ...). Values only need a `.shape` (tooling-nodes'
model inspection passes header-only stand-ins). Families Loom does not load are not detected (None). `count_blocks` counts numbered blocks in a key list; the
diffusers-layout detectors raise: packs that build their own networks from ComfyUI's config of a diffusers file
cannot run on Loom.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from engine.detect import detect_family_of_unet
from engine.detect_flow import FLUX_PROBE, MMDIT_PROBE, detect_flux, detect_mmdit
from engine.errors import UnknownModelError
from engine.families import Family
from engine.model_configs import ModelConfig, config_for

__all__ = ["UnetConfig", "unet_prefix_from_state_dict", "detect_unet_config", "model_config_from_unet_config",
           "model_config_from_unet", "count_blocks", "unet_config_from_diffusers_unet",
           "model_config_from_diffusers_unet"]

_PREFIXES = ("model.diffusion_model.", "model.model.", "net.")


class UnetConfig(dict[str, Any]):
    """A detected network config (a plain dict to packs) that also carries the family and prediction it was
    detected as, which `model_config_from_unet_config` reads."""

    def __init__(self, values: Mapping[str, Any], family: Family, prediction: str) -> None:
        super().__init__(values)
        self.family = family
        self.prediction = prediction

    def copy(self) -> UnetConfig:
        return UnetConfig(self, self.family, self.prediction)


def unet_prefix_from_state_dict(state_dict: Mapping[str, Any]) -> str:
    """The key prefix most of the file's keys share among ComfyUI's known ones (`model.` when none dominates)."""
    counts = dict.fromkeys(_PREFIXES, 0)
    for key in state_dict:
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                counts[prefix] += 1
                break
    top = max(counts, key=lambda p: counts[p])
    return top if counts[top] > 5 else "model."


def _shapes(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Sequence[int]]:
    """Tensor shapes under `prefix`, the prefix stripped (entries without a shape, e.g. `__metadata__`, skipped)."""
    shapes: dict[str, Sequence[int]] = {}
    for key, value in state_dict.items():
        shape = getattr(value, "shape", None)
        if key.startswith(prefix) and shape is not None:
            shapes[key[len(prefix):]] = tuple(int(d) for d in shape)
    return shapes


def detect_unet_config(state_dict: Mapping[str, Any], key_prefix: str,
                       metadata: Mapping[str, str] | None = None) -> UnetConfig | None:
    """The network config of the model under `key_prefix`, or None when Loom knows no family for it."""
    shapes = _shapes(state_dict, key_prefix)
    try:
        if FLUX_PROBE in shapes:
            family, flux = detect_flux(shapes, "")
            return UnetConfig({**dataclasses.asdict(flux), "image_model": "flux"}, family, family.prediction)
        if MMDIT_PROBE in shapes:
            family, mmdit = detect_mmdit(shapes, "")
            return UnetConfig({**dataclasses.asdict(mmdit), "image_model": "mmdit"}, family, family.prediction)
        if "input_blocks.0.0.weight" not in shapes:
            return None
        family, unet, prediction = detect_family_of_unet(shapes, metadata)
    except (UnknownModelError, KeyError, IndexError, ValueError):
        return None
    values = dataclasses.asdict(unet)
    for key in ("channel_mult", "num_res_blocks", "transformer_depth", "transformer_depth_output"):
        values[key] = list(values[key])
    return UnetConfig(values, family, prediction)


def model_config_from_unet_config(unet_config: Mapping[str, Any],
                                  state_dict: Mapping[str, Any] | None = None) -> ModelConfig | None:
    """The `comfy.supported_models` config of a config `detect_unet_config` returned (None for any other dict:
    Loom detects families from tensor shapes, not from ComfyUI's config keys)."""
    if not isinstance(unet_config, UnetConfig):
        return None
    return type(config_for(unet_config.family))(dict(unet_config))


def model_config_from_unet(state_dict: Mapping[str, Any], unet_key_prefix: str, use_base_if_no_match: bool = False,
                           metadata: Mapping[str, str] | None = None) -> ModelConfig | None:
    """Detect and wrap in one call (`use_base_if_no_match`: the plain base config instead of None)."""
    unet_config = detect_unet_config(state_dict, unet_key_prefix, metadata)
    found = model_config_from_unet_config(unet_config, state_dict) if unet_config is not None else None
    if found is None and use_base_if_no_match:
        return ModelConfig(dict(unet_config or {}))
    return found


def count_blocks(state_dict_keys: Any, prefix_string: str) -> int:
    """How many consecutive blocks `prefix_string.format(i)` (i = 0, 1, ...) some key starts with."""
    keys = list(state_dict_keys.keys() if isinstance(state_dict_keys, Mapping) else state_dict_keys)
    count = 0
    while any(k.startswith(prefix_string.format(count)) for k in keys):
        count += 1
    return count


def _diffusers_not_provided(name: str) -> NoReturn:
    raise NotImplementedError(f"comfy.model_detection.{name} is not provided by Loom: Loom reads diffusers-layout "
                              f"UNets through its own key maps (engine.diffusers_names) and has no ComfyUI unet_config "
                              f"of them to give; a pack that builds its own network from one cannot run on Loom")


def unet_config_from_diffusers_unet(state_dict: Any, dtype: Any = None) -> NoReturn:
    _diffusers_not_provided("unet_config_from_diffusers_unet")


def model_config_from_diffusers_unet(state_dict: Any) -> NoReturn:
    _diffusers_not_provided("model_config_from_diffusers_unet")
