"""Model-family nodes: DualCLIPLoader, ModelSamplingDiscrete and the config-file CheckpointLoader."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from engine.clip_handle import ClipHandle
    from engine.handles import ModelHandle, VaeHandle

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.loaders import _embeddings_dir, _loading_error, _resolve, clip_type_problem

__all__ = ["DualCLIPLoader", "ModelSamplingDiscrete", "CheckpointLoader", "NODES"]

DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
                   "kandinsky5", "kandinsky5_image"]
SAMPLING_TYPES = ["eps", "v_prediction", "lcm", "x0", "img_to_img"]
_PREDICTIONS = {"eps": "eps", "v_prediction": "v"}


class DualCLIPLoader(BuiltinNode):
    """Load two text-encoder files as one CLIP (sdxl: CLIP-L + bigG; sd3: two of CLIP-L, CLIP-G, T5-XXL; flux:
    CLIP-L + T5-XXL), each file recognised by content."""

    DISPLAY_NAME = "DualCLIPLoader"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\nflux: clip-l, t5"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"clip_name1": "text_encoders", "clip_name2": "text_encoders"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("text_encoders")
        return {
            "required": {"clip_name1": (files,), "clip_name2": (files,), "type": (DUAL_CLIP_TYPES,)},
            "optional": {"device": (["default", "cpu"], {"advanced": True})},
        }

    def load_clip(self, clip_name1: str, clip_name2: str, type: str = "sdxl", device: str = "default"
                  ) -> tuple[ClipHandle]:
        from engine import loading

        problem = clip_type_problem("DualCLIPLoader", type)
        if problem:
            raise input_error("DualCLIPLoader", "type", problem)
        services = self._services()
        paths = [_resolve("DualCLIPLoader", services, "text_encoders", f"clip_name{i}", name)
                 for i, name in ((1, clip_name1), (2, clip_name2))]
        try:
            clip = loading.load_clip(paths, type, manager=services.model_manager(),
                                     embedding_directory=_embeddings_dir(services))
        except Exception as exc:  # engine errors of any kind: name node, input and files
            raise _loading_error("DualCLIPLoader", "clip_name1", " + ".join(paths), exc) from exc
        return (clip,)


class ModelSamplingDiscrete(BuiltinNode):
    """Override the model's prediction type (eps / v) and optionally rescale to zero terminal SNR."""

    DISPLAY_NAME = "ModelSamplingDiscrete"
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "sampling": (SAMPLING_TYPES,),
                             "zsnr": ("BOOLEAN", {"default": False, "advanced": True})}}

    def patch(self, model: ModelHandle, sampling: str, zsnr: bool = False) -> tuple[ModelHandle]:
        from engine.sampling.model_sampling import ModelSamplingDiscrete as Sampling

        prediction = _PREDICTIONS.get(sampling)
        if prediction is None:
            raise input_error("ModelSamplingDiscrete", "sampling",
                              f"{sampling!r} is not supported yet; pick one of {sorted(_PREDICTIONS)}")
        old = model.model_sampling
        patched = model.clone()
        patched.model_sampling = Sampling(prediction=prediction,  # type: ignore[arg-type]
                                          linear_start=getattr(old, "linear_start", 0.00085),
                                          linear_end=getattr(old, "linear_end", 0.012),
                                          timesteps=getattr(old, "num_timesteps", 1000), zero_snr=bool(zsnr))
        return (patched,)


def prediction_from_config(path: str) -> str | None:
    """``v`` / ``eps`` from an LDM yaml's ``parameterization`` line (None when it says nothing)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    m = re.search(r"^\s*parameterization:\s*['\"]?(\w+)", text, flags=re.MULTILINE)
    if m is None:
        return None
    return "v" if m.group(1).lower() in ("v", "v_prediction") else "eps"


class CheckpointLoader(BuiltinNode):
    """Deprecated loader with an explicit LDM config (only its parameterization is used: eps or v)."""

    DISPLAY_NAME = "Load Checkpoint With Config (DEPRECATED)"
    CATEGORY = "advanced/loaders"
    DEPRECATED = True
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"config_name": "configs", "ckpt_name": "checkpoints"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        paths = cls._services().paths
        return {"required": {"config_name": (paths.get_filename_list("configs"),),
                             "ckpt_name": (paths.get_filename_list("checkpoints"),)}}

    def load_checkpoint(self, config_name: str, ckpt_name: str
                        ) -> tuple[ModelHandle, ClipHandle | None, VaeHandle | None]:
        from engine import loading

        services = self._services()
        config = _resolve("CheckpointLoader", services, "configs", "config_name", config_name)
        path = _resolve("CheckpointLoader", services, "checkpoints", "ckpt_name", ckpt_name)
        try:
            prediction = prediction_from_config(config)
        except OSError as exc:
            raise _loading_error("CheckpointLoader", "config_name", config, exc) from exc
        try:
            model, clip, vae = loading.load_checkpoint(path, services.model_manager(),
                                                       embedding_directory=_embeddings_dir(services),
                                                       prediction=prediction)
        except Exception as exc:  # engine errors of any kind: name node, input and file
            raise _loading_error("CheckpointLoader", "ckpt_name", path, exc) from exc
        return model, clip, vae


NODES = [DualCLIPLoader, ModelSamplingDiscrete, CheckpointLoader]
