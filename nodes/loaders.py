"""Model loaders: checkpoint, diffusion model, text encoder, VAE (files from the model folders)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from engine.paths import PathError
from nodes._base import BuiltinNode, InputTypes, input_error

if TYPE_CHECKING:
    from engine.model_management import ModelManager
    from nodes.services import NodeServices

T = TypeVar("T")

__all__ = ["CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "VAELoader", "LoraLoader", "LoraLoaderModelOnly",
           "unCLIPCheckpointLoader"]

WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2",
              "ovis", "sd2"]
# the types of ComfyUI's lists that Loom has text encoders for (the others are refused at validation)
CLIP_TYPES_LOADED: Mapping[str, tuple[str, ...]] = {"CLIPLoader": ("stable_diffusion", "sd2", "sd3"),
                                                    "DualCLIPLoader": ("sdxl", "sd3", "flux")}
_VIDEO_TAE_PREFIXES = ("taehv", "lighttaew2_2", "lighttaew2_1", "lighttaehy1_5")
_TAESD_NAMES = ("taesd", "taesdxl", "taesd3", "taef1")


def _resolve(cls_name: str, services: Any, folder: str, input_name: str, name: str) -> str:
    try:
        path = services.paths.get_full_path(folder, name)
    except PathError as exc:
        raise input_error(cls_name, input_name, str(exc)) from exc
    if path is None:
        roots = ", ".join(services.paths.get_folder_paths(folder))
        raise input_error(cls_name, input_name,
                          f"file {name!r} not found in models folder '{folder}' (searched {roots}); "
                          "copy the file there or pick another")
    return str(path)


def clip_type_problem(cls_name: str, clip_type: object) -> str | None:
    """Why a CLIPLoader / DualCLIPLoader cannot load this `type` (None when it can)."""
    loaded = CLIP_TYPES_LOADED[cls_name]
    if clip_type in loaded:
        return None
    return (f"type {clip_type!r} is not supported: Loom has no text encoders for that model family; "
            f"{cls_name} loads types {', '.join(loaded)}")


def _embeddings_dir(services: Any) -> str | None:
    roots = services.paths.get_folder_paths("embeddings")
    return roots[0] if roots else None


def _weight_dtype(name: str) -> Any:
    """UNETLoader's weight_dtype option -> torch dtype (None = the checkpoint's own)."""
    if name == "default":
        return None
    import torch

    return {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
            "fp8_e5m2": torch.float8_e5m2}[name]


def _loading_error(cls_name: str, input_name: str, path: str, exc: Exception) -> Exception:
    return input_error(cls_name, input_name,
                       f"could not load {os.path.basename(path)} ({path}): {exc}")


def load_model_file(cls_name: str, services: NodeServices, folder: str, input_name: str, name: str,
                    load: Callable[[str, ModelManager], T]) -> T:
    """Resolve `name` in the models `folder` and `load(path, model manager)` it; any failure is a node error
    naming the node, the input and the file."""
    path = _resolve(cls_name, services, folder, input_name, name)
    try:
        return load(path, services.model_manager())
    except Exception as exc:  # engine errors of any kind: name node, input and file
        raise _loading_error(cls_name, input_name, path, exc) from exc


class CheckpointLoaderSimple(BuiltinNode):
    """Load a single-file checkpoint (architecture auto-detected) as MODEL, CLIP and VAE."""

    DISPLAY_NAME = "Load Checkpoint"
    CATEGORY = "loaders"
    DESCRIPTION = "Loads a diffusion model checkpoint; diffusion models denoise latents."
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.",
                       "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"ckpt_name": "checkpoints"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("checkpoints")
        return {"required": {"ckpt_name": (files, {"tooltip": "The name of the checkpoint (model) to load."})}}

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        from engine import loading

        services = self._services()
        return load_model_file("CheckpointLoaderSimple", services, "checkpoints", "ckpt_name", ckpt_name,
                               lambda path, manager: loading.load_checkpoint(
                                   path, manager, embedding_directory=_embeddings_dir(services)))


class unCLIPCheckpointLoader(BuiltinNode):  # noqa: N801  (ComfyUI's node id)
    """Load an unCLIP checkpoint (SD2.1 unCLIP) as MODEL, CLIP, VAE and the CLIP vision model it embeds."""

    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    FUNCTION = "load_checkpoint"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"ckpt_name": "checkpoints"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"ckpt_name": (cls._services().paths.get_filename_list("checkpoints"),)}}

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any, Any]:
        from engine import loading, unclip

        services = self._services()

        def load(path: str, manager: ModelManager) -> tuple[Any, Any, Any, Any]:
            model, clip, vae = loading.load_checkpoint(path, manager, embedding_directory=_embeddings_dir(services))
            return model, clip, vae, unclip.load_embedded_clip_vision(path, manager)

        return load_model_file("unCLIPCheckpointLoader", services, "checkpoints", "ckpt_name", ckpt_name, load)


class UNETLoader(BuiltinNode):
    """Load a diffusion model (UNet) file from `diffusion_models`."""

    DISPLAY_NAME = "Load Diffusion Model"
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"unet_name": "diffusion_models"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("diffusion_models")
        return {"required": {"unet_name": (files,), "weight_dtype": (WEIGHT_DTYPES,)}}

    def load_unet(self, unet_name: str, weight_dtype: str = "default") -> tuple[Any]:
        from engine import loading

        dtype = _weight_dtype(weight_dtype)
        return (load_model_file("UNETLoader", self._services(), "diffusion_models", "unet_name", unet_name,
                                lambda path, manager: loading.load_unet(path, manager, dtype=dtype)),)


class CLIPLoader(BuiltinNode):
    """Load a text encoder file from `text_encoders`."""

    DISPLAY_NAME = "Load CLIP"
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"clip_name": "text_encoders"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("text_encoders")
        return {
            "required": {"clip_name": (files,), "type": (CLIP_TYPES,)},
            "optional": {"device": (["default", "cpu"], {"advanced": True})},
        }

    def load_clip(self, clip_name: str, type: str = "stable_diffusion", device: str = "default") -> tuple[Any]:
        from engine import loading

        problem = clip_type_problem("CLIPLoader", type)
        if problem:
            raise input_error("CLIPLoader", "type", problem)
        services = self._services()
        path = _resolve("CLIPLoader", services, "text_encoders", "clip_name", clip_name)
        try:
            # device "cpu" needs no action here: the model manager places text encoders
            clip = loading.load_clip([path], type, manager=services.model_manager(),
                                     embedding_directory=_embeddings_dir(services))
        except Exception as exc:  # engine errors of any kind: name node, input and file
            raise _loading_error("CLIPLoader", "clip_name", path, exc) from exc
        return (clip,)


class VAELoader(BuiltinNode):
    """Load a VAE file from `vae` (also lists tiny autoencoders in `vae_approx` and "pixel_space")."""

    DISPLAY_NAME = "Load VAE"
    CATEGORY = "loaders"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"vae_name": "vae"}

    @classmethod
    def vae_list(cls) -> list[str]:
        """Files in `vae`, video tiny-AEs and complete taesd pairs in `vae_approx`, then "pixel_space"."""
        paths = cls._services().paths
        names = list(paths.get_filename_list("vae"))
        approx = paths.get_filename_list("vae_approx")
        names += [f for f in approx if f.startswith(_VIDEO_TAE_PREFIXES)]
        for tae in _TAESD_NAMES:
            has_enc = any(f.startswith(f"{tae}_encoder.") for f in approx)
            has_dec = any(f.startswith(f"{tae}_decoder.") for f in approx)
            if has_enc and has_dec:
                names.append(tae)
        names.append("pixel_space")
        return names

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"vae_name": (cls.vae_list(),)}}

    def load_vae(self, vae_name: str) -> tuple[Any]:
        from engine import loading

        services = self._services()
        if vae_name == "pixel_space" or vae_name in _TAESD_NAMES:
            raise input_error("VAELoader", "vae_name",
                              f"{vae_name!r} is not supported by this engine yet; pick a VAE file")
        folder = "vae" if services.paths.get_full_path("vae", vae_name) else "vae_approx"
        return (load_model_file("VAELoader", services, folder, "vae_name", vae_name, loading.load_vae),)


_STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


class LoraLoader(BuiltinNode):
    """Apply a LoRA file from `loras` to MODEL and CLIP (patched clones; the inputs stay untouched)."""

    DISPLAY_NAME = "Load LoRA"
    CATEGORY = "loaders"
    DESCRIPTION = "LoRAs modify diffusion and CLIP models, altering the way in which latents are denoised."
    RETURN_TYPES: tuple[str, ...] = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS: tuple[str, ...] = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "run_with_report"
    COMFY_FUNCTION = "load_lora"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"lora_name": "loras"}

    def __init__(self) -> None:
        self._loaded: tuple[str, Any] | None = None
        self._report: dict[str, Any] | None = None

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
                "lora_name": (cls._services().paths.get_filename_list("loras"),
                              {"tooltip": "The name of the LoRA."}),
                "strength_model": ("FLOAT", dict(_STRENGTH)),
                "strength_clip": ("FLOAT", dict(_STRENGTH)),
            }
        }

    def _lora(self, cls_name: str, lora_name: str) -> Any:
        from engine import lora

        path = _resolve(cls_name, self._services(), "loras", "lora_name", lora_name)
        if self._loaded is None or self._loaded[0] != path:
            try:
                self._loaded = (path, lora.load_lora(path))
            except Exception as exc:  # engine errors of any kind: name node, input and file
                raise _loading_error(cls_name, "lora_name", path, exc) from exc
        return self._loaded[1]

    def _apply(self, cls_name: str, model: Any, clip: Any, lora_name: str, strength_model: float,
               strength_clip: float) -> tuple[Any, Any, dict[str, Any]]:
        """Patched clones plus a report for /history: keys matched, modules patched per network."""
        from engine import lora

        weights = self._lora(cls_name, lora_name)
        try:
            new_model, new_clip, report = lora.apply_lora_with_report(model, clip, weights, strength_model,
                                                                      strength_clip)
        except ValueError as exc:
            raise input_error(cls_name, "lora_name", f"{lora_name}: {exc}") from exc
        return new_model, new_clip, {"lora_name": lora_name, "strength_model": strength_model,
                                     "strength_clip": strength_clip if clip is not None else None, **report}

    def load_lora(self, model: Any, clip: Any, lora_name: str, strength_model: float,
                  strength_clip: float) -> tuple[Any, Any]:
        if strength_model == 0 and strength_clip == 0:
            return model, clip
        new_model, new_clip, self._report = self._apply("LoraLoader", model, clip, lora_name, strength_model,
                                                        strength_clip)
        return new_model, new_clip

    def run_with_report(self, **inputs: Any) -> Any:
        """The executor's entry (FUNCTION): ComfyUI's method, plus the LoRA report as a `ui` entry for /history;
        `load_lora` itself keeps ComfyUI's tuple return for packs that call or override it."""
        self._report = None
        result = getattr(self, self.COMFY_FUNCTION)(**inputs)
        if self._report is None:
            return result
        return {"ui": {"lora": [self._report]}, "result": tuple(result)}


class LoraLoaderModelOnly(LoraLoader):
    """Apply a LoRA file to MODEL only (text-encoder keys are ignored)."""

    DISPLAY_NAME = "LoraLoaderModelOnly"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The modified diffusion model.",)
    COMFY_FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "model": ("MODEL",),
                "lora_name": (cls._services().paths.get_filename_list("loras"),),
                "strength_model": ("FLOAT", dict(_STRENGTH)),
            }
        }

    def load_lora_model_only(self, model: Any, lora_name: str, strength_model: float) -> tuple[Any]:
        if strength_model == 0:
            return (model,)
        new_model, _, self._report = self._apply("LoraLoaderModelOnly", model, None, lora_name, strength_model,
                                                 0.0)
        return (new_model,)


NODES = [CheckpointLoaderSimple, UNETLoader, CLIPLoader, VAELoader, LoraLoader, LoraLoaderModelOnly,
         unCLIPCheckpointLoader]
