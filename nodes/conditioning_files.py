"""ConditioningLoader / SaveConditioning (ComfyUI comfy_extras nodes_cond) and MarigoldV2PostProcess
(nodes_marigold): model-free nodes current templates use.

A conditioning file is safetensors: the embedding as ``conditioning``, each tensor option under its own key, a
list of tensors as ``<key>.0``, ``<key>.1``, ..., and the plain options (bool / int / float / str) as JSON in
the ``conditioning_options`` metadata. SaveConditioning writes one (a single entry only) to output/ as
``<prefix>_<counter:05>_.safetensors``; ConditioningLoader reads one from models/embeddings.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from engine.paths import PathError
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    import torch

__all__ = ["ConditioningLoader", "SaveConditioning", "MarigoldV2PostProcess"]

Conditioning = list[list[Any]]


def _read(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt", device="cpu") as fh:
            return {key: fh.get_tensor(key) for key in fh.keys()}, dict(fh.metadata() or {})
    import torch

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ValueError(f"holds a {type(loaded).__name__}, not a dict of tensors")
    return loaded, {}


def unpack(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Conditioning:
    """A conditioning file's tensors and metadata -> ``[[embedding, options]]``."""
    tensors = dict(tensors)
    if "conditioning" not in tensors:
        raise ValueError(f"has no 'conditioning' tensor (keys: {sorted(tensors)[:8]})")
    embedding = tensors.pop("conditioning")
    options: dict[str, Any] = json.loads(metadata.get("conditioning_options", "{}"))
    lists: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, index = key.rpartition(".")
        if index.isdigit():
            lists.setdefault(name, {})[int(index)] = value
        else:
            options[key] = value
    options.update({name: [items[i] for i in sorted(items)] for name, items in lists.items()})
    return [[embedding, options]]


def pack(conditioning: Conditioning) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``[[embedding, options]]`` -> the tensors and metadata of a conditioning file."""
    import torch

    if len(conditioning) != 1:
        raise ValueError(f"holds {len(conditioning)} entries; save a single conditioning, before combining")
    embedding, options = conditioning[0]
    tensors: dict[str, torch.Tensor] = {"conditioning": embedding}
    plain: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in value):
            tensors.update({f"{key}.{i}": t for i, t in enumerate(value)})
        elif isinstance(value, (bool, int, float, str)):
            plain[key] = value
        elif value is not None:
            raise ValueError(f"option {key!r} ({type(value).__name__}) cannot be saved")
    return ({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()},
            {"conditioning_options": json.dumps(plain)})


class ConditioningLoader(BuiltinNode):
    """Load a conditioning saved by Save Conditioning (any safetensors with a 'conditioning' tensor)."""

    DISPLAY_NAME = "Load Conditioning"
    CATEGORY = "model/loaders"
    DESCRIPTION = ("Loads a conditioning saved with Save Conditioning, or any safetensors file with a 'conditioning' "
                   "tensor, from the embeddings folder.")
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning_name": (cls._services().paths.get_filename_list("embeddings"),)}}

    def load(self, conditioning_name: str) -> tuple[Conditioning]:
        try:
            path = self._services().paths.get_full_path_or_raise("embeddings", conditioning_name)
            return (unpack(*_read(path)),)
        except PathError as exc:
            raise input_error("ConditioningLoader", "conditioning_name", str(exc)) from exc
        except (ValueError, OSError, RuntimeError) as exc:
            raise input_error("ConditioningLoader", "conditioning_name",
                              f"file {conditioning_name!r} is not a conditioning file: {exc}") from exc


class SaveConditioning(BuiltinNode):
    """Save one conditioning to output/ as safetensors (move it to models/embeddings to load it)."""

    DISPLAY_NAME = "Save Conditioning"
    CATEGORY = "model/conditioning"
    DESCRIPTION = ("Saves a conditioning to the output folder as safetensors; move the file to models/embeddings to "
                   "load it with Load Conditioning, e.g. to skip the text encoder.")
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "filename_prefix": ("STRING", {"default": "conditioning/ComfyUI"})}}

    def save(self, conditioning: Conditioning, filename_prefix: str) -> tuple[Conditioning]:
        from safetensors.torch import save_file

        try:
            tensors, metadata = pack(conditioning)
        except ValueError as exc:
            raise input_error("SaveConditioning", "conditioning", str(exc)) from exc
        services = self._services()
        target = save_target("SaveConditioning", services, filename_prefix)
        save_file(tensors, os.path.join(target.full_output_folder, f"{target.filename}_{target.counter:05}_.safetensors"),
                  metadata=metadata)
        return (conditioning,)


class MarigoldV2PostProcess(BuiltinNode):
    """A decoded Marigold V2 prediction as a picture: depth normalised per image (near bright), unit normals,
    or albedo encoded to sRGB."""

    DISPLAY_NAME = "Marigold V2 Post-Process"
    CATEGORY = "image/geometry estimation"
    DESCRIPTION = ("Turns a decoded Marigold V2 prediction into an image: normalized depth with near as bright, unit "
                   "surface normals, or sRGB albedo.")
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",), "prediction": (["depth", "normals", "albedo"],)}}

    def execute(self, image: torch.Tensor, prediction: str) -> tuple[torch.Tensor]:
        import torch

        from engine.color_space import linear_to_srgb

        if prediction == "normals":
            return ((torch.nn.functional.normalize(image * 2.0 - 1.0, dim=-1) + 1.0) * 0.5,)
        if prediction == "albedo":
            return (linear_to_srgb(image),)
        depth = image.mean(dim=-1, keepdim=True)
        near, far = depth.amin(dim=(1, 2, 3), keepdim=True), depth.amax(dim=(1, 2, 3), keepdim=True)
        return (((far - depth) / (far - near).clamp(min=1e-6)).repeat(1, 1, 1, 3),)


NODES = [ConditioningLoader, SaveConditioning, MarigoldV2PostProcess]
