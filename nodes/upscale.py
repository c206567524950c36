"""Upscale-model nodes (ComfyUI's comfy_extras names): load an ESRGAN-family model, upscale images with it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from nodes._base import BuiltinNode, InputTypes, input_error, progress_context
from nodes.loaders import load_model_file

if TYPE_CHECKING:
    import torch

    from engine.upscale import UpscaleModel

__all__ = ["UpscaleModelLoader", "ImageUpscaleWithModel"]


class UpscaleModelLoader(BuiltinNode):
    """Load an upscale model (ESRGAN, Real-ESRGAN RRDBNet or SRVGGNetCompact) from `upscale_models`.

    Parameters:
        model_name: a file in the `upscale_models` models folder (.safetensors, .pth, .pt, .ckpt, .bin).
    """

    DISPLAY_NAME = "Load Upscale Model"
    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model_name": (cls._services().paths.get_filename_list("upscale_models"),)}}

    def load_model(self, model_name: str) -> tuple[UpscaleModel]:
        from engine.upscale import load_upscale_model

        return (load_model_file("UpscaleModelLoader", self._services(), "upscale_models", "model_name", model_name,
                                load_upscale_model),)


class ImageUpscaleWithModel(BuiltinNode):
    """Upscale images with an upscale model: 512 px tiles overlapping by 32 (halved on out-of-memory),
    feathered overlaps, output clamped to 0..1; progress is reported per tile.

    Parameters:
        upscale_model: an UPSCALE_MODEL from UpscaleModelLoader.
        image: IMAGE [B,H,W,C] in 0..1.
    """

    DISPLAY_NAME = "Upscale Image (using Model)"
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model: UpscaleModel, image: torch.Tensor) -> tuple[torch.Tensor]:
        import torch

        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise input_error("ImageUpscaleWithModel", "image", f"expected an IMAGE tensor [B,H,W,C], got {got}")
        run = getattr(upscale_model, "upscale", None)
        if run is None:
            raise input_error("ImageUpscaleWithModel", "upscale_model",
                              f"expected an UPSCALE_MODEL from UpscaleModelLoader, got {type(upscale_model).__name__}")
        ctx = progress_context()

        def progress(done: int, total: int) -> None:
            if ctx is not None:
                ctx.progress(done, total)

        try:
            out = run(image, progress=progress)
        except ValueError as exc:  # channel mismatch between image and model
            raise input_error("ImageUpscaleWithModel", "image", str(exc)) from exc
        return (out,)


NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
