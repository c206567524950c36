"""Save nodes for models (ComfyUI's CheckpointSave, ModelSave, CLIPSave, VAESave): write the handles, with
their LoRA / merge patches baked in, to output/ as `<prefix>_<counter:05>_.safetensors` in ComfyUI's key
layouts and metadata (`engine.checkpoint_save`). With `--disable-metadata` the prompt and workflow are left out.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from engine.paths import SaveImagePath
from nodes._base import BuiltinNode, InputTypes, input_error, save_target

if TYPE_CHECKING:
    from engine.clip_handle import ClipHandle
    from engine.handles import ModelHandle, VaeHandle

__all__ = ["CheckpointSave", "ModelSave", "CLIPSave", "VAESave"]

CATEGORY = "advanced/model_merging"
_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


class _SaveNode(BuiltinNode):
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def _target(cls, filename_prefix: str) -> SaveImagePath:
        services = cls._services()
        return save_target(cls.__name__, services, filename_prefix)

    @classmethod
    def _with_prompt(cls) -> bool:
        return not cls._services().disable_metadata


def _save_checkpoint(cls: type[_SaveNode], model: ModelHandle, clip: ClipHandle | None, vae: VaeHandle | None,
                     filename_prefix: str, prompt: object, extra_pnginfo: dict[str, object] | None) -> None:
    from engine.checkpoint_save import checkpoint_metadata, checkpoint_state, save_safetensors

    target = cls._target(filename_prefix)
    try:
        sd = checkpoint_state(model, clip, vae)
    except ValueError as exc:
        raise input_error(cls.__name__, "clip", str(exc)) from exc
    meta = checkpoint_metadata(model, clip, f"{target.filename} {target.counter}", prompt, extra_pnginfo,
                               with_prompt=cls._with_prompt())
    file = f"{target.filename}_{target.counter:05}_.safetensors"
    save_safetensors(os.path.join(target.full_output_folder, file), sd, meta)


class CheckpointSave(_SaveNode):
    """Save MODEL + CLIP + VAE as one single-file checkpoint (the family's key layout; loads back with
    CheckpointLoaderSimple here and in ComfyUI).

    Parameters:
        model, clip, vae: the handles to save (patches baked in).
        filename_prefix: path under output/, e.g. `checkpoints/ComfyUI` -> `checkpoints/ComfyUI_00001_.safetensors`.
    """

    DISPLAY_NAME = "Save Checkpoint"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",),
                             "filename_prefix": ("STRING", {"default": "checkpoints/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, model: ModelHandle, clip: ClipHandle, vae: VaeHandle, filename_prefix: str,
             prompt: object = None, extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        _save_checkpoint(type(self), model, clip, vae, filename_prefix, prompt, extra_pnginfo)
        return {}


class ModelSave(_SaveNode):
    """Save the MODEL's diffusion network alone (`model.diffusion_model.*` keys, ComfyUI's ModelSave layout).

    Parameters:
        model: the MODEL to save (patches baked in).
        filename_prefix: path under output/.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",),
                             "filename_prefix": ("STRING", {"default": "diffusion_models/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, model: ModelHandle, filename_prefix: str, prompt: object = None,
             extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        _save_checkpoint(type(self), model, None, None, filename_prefix, prompt, extra_pnginfo)
        return {}


class CLIPSave(_SaveNode):
    """Save each text tower of the CLIP as its own file, `<prefix>_<tower>_<counter>_.safetensors`, in the HF
    `text_model.*` layout (loads with CLIPLoader / DualCLIPLoader).

    Parameters:
        clip: the CLIP to save (patches baked in).
        filename_prefix: path under output/.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"clip": ("CLIP",), "filename_prefix": ("STRING", {"default": "clip/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, clip: ClipHandle, filename_prefix: str, prompt: object = None,
             extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        from engine.checkpoint_save import clip_tower_files, prompt_metadata, save_safetensors

        base: dict[str, str] = {}
        if self._with_prompt():
            base = {"format": "pt", **prompt_metadata(prompt, extra_pnginfo)}
        for tower, sd, extra in clip_tower_files(clip):
            target = self._target(f"{filename_prefix}_{tower}")
            file = f"{target.filename}_{target.counter:05}_.safetensors"
            save_safetensors(os.path.join(target.full_output_folder, file), sd, {**base, **extra})
        return {}


class VAESave(_SaveNode):
    """Save the VAE alone (its own key names, no prefix; loads with VAELoader).

    Parameters:
        vae: the VAE to save.
        filename_prefix: path under output/.
    """

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"vae": ("VAE",), "filename_prefix": ("STRING", {"default": "vae/ComfyUI_vae"})},
                "hidden": dict(_HIDDEN)}

    def save(self, vae: VaeHandle, filename_prefix: str, prompt: object = None,
             extra_pnginfo: dict[str, object] | None = None) -> dict[str, object]:
        from engine.checkpoint_save import prompt_metadata, save_safetensors, vae_state_dict

        target = self._target(filename_prefix)
        meta = prompt_metadata(prompt, extra_pnginfo) if self._with_prompt() else {}
        file = f"{target.filename}_{target.counter:05}_.safetensors"
        save_safetensors(os.path.join(target.full_output_folder, file), vae_state_dict(vae), meta)
        return {}


NODES = [CheckpointSave, CLIPSave, VAESave, ModelSave]
