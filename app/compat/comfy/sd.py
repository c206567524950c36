"""ComfyUI's `comfy.sd` for packs: model loaders returning Loom's MODEL / CLIP / VAE handles."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import comfy.clip_vision  # noqa: F401  (ComfyUI's comfy.sd imports these: packs reach them as comfy.* attributes)
import comfy.model_base  # noqa: F401

from app.compat._environment import handles_for
from engine.adapters.style import StyleModel  # noqa: F401  (STYLE_MODEL's class: packs check isinstance)
from engine.lazy_models import LazyModelManager

if TYPE_CHECKING:
    from engine.model_management import ModelManager

_loom = handles_for(__name__)  # this Loom instance's objects


def _manager() -> ModelManager:
    if _loom.models is None:  # shims loaded without a Loom instance (tests): one manager of their own
        import comfy.model_management

        _loom.models = LazyModelManager(cpu_only=comfy.model_management._policy().device.type == "cpu")
    return _loom.models.real()


def load_checkpoint_guess_config(ckpt_path: str, output_vae: bool = True, output_clip: bool = True,
                                 output_clipvision: bool = False, embedding_directory: str | None = None,
                                 output_model: bool = True, model_options: Any = None,
                                 te_model_options: Any = None) -> tuple[Any, Any, Any, Any]:
    """(MODEL, CLIP, VAE, CLIP_VISION=None) from a single-file checkpoint, family auto-detected."""
    from engine.loading import load_checkpoint

    model, clip, vae = load_checkpoint(ckpt_path, _manager(), embedding_directory=_one_dir(embedding_directory),
                                       output_clip=output_clip, output_vae=output_vae)
    return (model if output_model else None), clip, vae, None


def load_checkpoint(config_path: str | None = None, ckpt_path: str | None = None, output_vae: bool = True,
                    output_clip: bool = True, embedding_directory: Any = None, state_dict: Any = None,
                    config: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """ComfyUI's deprecated loader with an LDM yaml config: (MODEL, CLIP, VAE) of the checkpoint, family detected,
    the config's ``parameterization: v`` and text encoder ``layer_idx`` applied as ComfyUI applies them."""
    if state_dict is not None or ckpt_path is None:
        raise ValueError("comfy.sd.load_checkpoint: Loom loads a checkpoint file (ckpt_path); a state_dict argument "
                         "is not supported")
    if config is None:
        if config_path is None:
            raise ValueError("comfy.sd.load_checkpoint: give config_path (an LDM .yaml) or config (its parsed dict)")
        import yaml

        with open(config_path, encoding="utf-8") as stream:
            config = yaml.safe_load(stream)
    try:
        params = config["model"]["params"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"comfy.sd.load_checkpoint: {config_path or 'config'} is not an LDM config "
                         "(no model.params)") from exc
    from engine.loading import load_checkpoint as engine_load_checkpoint

    model, clip, vae = engine_load_checkpoint(ckpt_path, _manager(), embedding_directory=_one_dir(embedding_directory),
                                              output_clip=output_clip, output_vae=output_vae,
                                              prediction="v" if params.get("parameterization") == "v" else None)
    layer_idx = ((params.get("cond_stage_config") or {}).get("params") or {}).get("layer_idx")
    if clip is not None and layer_idx is not None:
        clip.clip_layer(layer_idx)
    return model, clip, vae


def _one_dir(embedding_directory: Any) -> str | None:
    # ComfyUI passes folder_paths.get_folder_paths("embeddings") (a list); Loom's loader takes one folder.
    if isinstance(embedding_directory, (list, tuple)):
        return str(embedding_directory[0]) if embedding_directory else None
    return str(embedding_directory) if embedding_directory is not None else None


def load_diffusion_model(unet_path: str, model_options: dict[str, Any] | None = None) -> Any:
    from engine.loading import load_unet

    dtype = (model_options or {}).get("dtype")
    return load_unet(unet_path, _manager(), dtype=dtype)


load_unet = load_diffusion_model


def load_diffusion_model_state_dict(sd: dict[str, Any], model_options: dict[str, Any] | None = None) -> Any:
    """The MODEL of a diffusion model's tensors (UNet / Flux / MMDiT detected from their shapes); a pack's own
    layer set in `model_options["custom_operations"]` builds the network (GGUF's quantised layers)."""
    from engine.loading import unet_from_state_dict

    options = model_options or {}
    return unet_from_state_dict(sd, _manager(), Path("state dict"), dtype=options.get("dtype"),
                                operations=options.get("custom_operations"))


def load_vae(vae_path: str) -> Any:
    """Loom-only convenience (ComfyUI builds `VAE(sd=...)`): the VAE handle of a file."""
    from engine.loading import load_vae as engine_load_vae

    return engine_load_vae(vae_path, _manager())


class CLIPType(Enum):
    """ComfyUI's text-encoder kinds (names and values as ComfyUI numbers them); Loom's loaders serve
    STABLE_DIFFUSION (SD1.x / SD2.x / refiner, SDXL for a CLIP-L + bigG pair), SD3 and FLUX."""
    STABLE_DIFFUSION = 1
    STABLE_CASCADE = 2
    SD3 = 3
    STABLE_AUDIO = 4
    HUNYUAN_DIT = 5
    FLUX = 6
    MOCHI = 7
    LTXV = 8
    HUNYUAN_VIDEO = 9
    PIXART = 10
    COSMOS = 11
    LUMINA2 = 12
    WAN = 13
    HIDREAM = 14
    CHROMA = 15
    ACE = 16
    OMNIGEN2 = 17
    QWEN_IMAGE = 18
    HUNYUAN_IMAGE = 19


def _clip_type(clip_type: Any, files: int) -> str:
    """Loom's CLIP type for a ComfyUI one: STABLE_DIFFUSION with two files is DualCLIPLoader's 'sdxl'."""
    name = str(getattr(clip_type, "name", clip_type or "stable_diffusion")).lower()
    return "sdxl" if name == "stable_diffusion" and files == 2 else name


def load_clip(ckpt_paths: list[str], embedding_directory: Any = None,
              clip_type: Any = CLIPType.STABLE_DIFFUSION, model_options: Any = None) -> Any:
    """The CLIP of text-encoder files (ComfyUI's CLIPLoader / DualCLIPLoader / TripleCLIPLoader)."""
    if (model_options or {}).get("custom_operations") is not None:
        from engine.state_files import read_state_dict

        return _clip_of([(Path(p), *read_state_dict(p)) for p in ckpt_paths], embedding_directory, clip_type,
                        model_options)
    from engine.loading import load_clip as engine_load_clip

    return engine_load_clip(ckpt_paths, _clip_type(clip_type, len(ckpt_paths)), manager=_manager(),
                            embedding_directory=_one_dir(embedding_directory))


def load_text_encoder_state_dicts(state_dicts: list[dict[str, Any]], embedding_directory: Any = None,
                                  clip_type: Any = CLIPType.STABLE_DIFFUSION, model_options: Any = None) -> Any:
    """The CLIP of text encoders' tensors (detected from their keys and shapes, as from files); a pack's own
    layer set in `model_options["custom_operations"]` builds the towers (GGUF's quantised T5)."""
    return _clip_of([(Path(f"state dict {i + 1}"), sd, {}) for i, sd in enumerate(state_dicts)],
                    embedding_directory, clip_type, model_options)


def _clip_of(files: list[tuple[Path, Any, Any]], embedding_directory: Any, clip_type: Any, model_options: Any) -> Any:
    from engine.loading import clip_from_state_dicts

    return clip_from_state_dicts(files, _clip_type(clip_type, len(files)), manager=_manager(),
                                 embedding_directory=_one_dir(embedding_directory),
                                 operations=(model_options or {}).get("custom_operations"))


def load_lora_for_models(model: Any, clip: Any, lora: dict[str, Any], strength_model: float,
                         strength_clip: float) -> tuple[Any, Any]:
    """Clones of `model` / `clip` carrying the LoRA state dict `lora` at the given strengths."""
    from engine.lora import apply_lora

    return apply_lora(model, clip, lora, strength_model, strength_clip)


def __getattr__(name: str) -> Any:
    handles = {"VAE": "VaeHandle", "CLIP": "ClipHandle", "ModelPatcher": "ModelHandle"}
    if name in handles:
        import engine.handles

        return getattr(engine.handles, handles[name])
    raise AttributeError(f"comfy.sd.{name} is not provided by Loom's ComfyUI compatibility layer")
