"""The other loaders of ComfyUI's core catalogue: a diffusers pipeline folder, A1111 hypernetworks, GLIGEN text
boxes and InstructPix2Pix conditioning (ComfyUI 0.3.64 names, inputs and categories; ``nodes.py``,
``comfy_extras/nodes_hypernetwork.py``, ``comfy_extras/nodes_ip2p.py``)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from engine.image_ops import center_crop_to_multiple
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.loaders import _embeddings_dir, load_model_file
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch

    from engine.clip_handle import ClipHandle
    from engine.gligen import Gligen
    from engine.handles import ModelHandle, VaeHandle
    from engine.types import Conditioning, Latent

__all__ = ["DiffusersLoader", "HypernetworkLoader", "GLIGENLoader", "GLIGENTextBoxApply",
           "InstructPixToPixConditioning"]


class DiffusersLoader(BuiltinNode):
    """Load a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/) from `diffusers` as MODEL,
    CLIP and VAE."""

    CATEGORY = "advanced/loaders/deprecated"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"model_path": "diffusers"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model_path": (cls._services().paths.get_filename_list("diffusers"),)}}

    def load_checkpoint(self, model_path: str, output_vae: bool = True,
                        output_clip: bool = True) -> tuple[Any, Any, Any]:
        from engine.diffusers_folder import load_diffusers

        services = self._services()
        return load_model_file("DiffusersLoader", services, "diffusers", "model_path", model_path,
                               lambda path, manager: load_diffusers(
                                   path, manager, embedding_directory=_embeddings_dir(services),
                                   output_clip=output_clip, output_vae=output_vae))


class HypernetworkLoader(BuiltinNode):
    """Apply an AUTOMATIC1111 hypernetwork from `hypernetworks` to the attention keys and values of MODEL."""

    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_hypernetwork"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"hypernetwork_name": "hypernetworks"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "hypernetwork_name": (cls._services().paths.get_filename_list("hypernetworks"),),
            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
        }}

    def load_hypernetwork(self, model: ModelHandle, hypernetwork_name: str, strength: float) -> tuple[ModelHandle]:
        from engine.hypernetwork import load_hypernetwork

        patch = load_model_file("HypernetworkLoader", self._services(), "hypernetworks", "hypernetwork_name",
                                hypernetwork_name, lambda path, _manager: load_hypernetwork(path, strength))
        out = model.clone()
        out.set_model_attn1_patch(patch)
        out.set_model_attn2_patch(patch)
        return (out,)


class GLIGENLoader(BuiltinNode):
    """Load a GLIGEN model from `gligen` (for GLIGENTextBoxApply)."""

    CATEGORY = "loaders"
    RETURN_TYPES = ("GLIGEN",)
    FUNCTION = "load_gligen"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"gligen_name": "gligen"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"gligen_name": (cls._services().paths.get_filename_list("gligen"),)}}

    def load_gligen(self, gligen_name: str) -> tuple[Gligen]:
        from engine.gligen import load_gligen

        return (load_model_file("GLIGENLoader", self._services(), "gligen", "gligen_name", gligen_name,
                                load_gligen),)


class GLIGENTextBoxApply(BuiltinNode):
    """Ground a phrase in a box (pixels) of every conditioning entry: GLIGEN places `text` there."""

    CATEGORY = "conditioning/gligen"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        size = {"min": 8, "max": MAX_RESOLUTION, "step": 8}
        place = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {
            "conditioning_to": ("CONDITIONING",),
            "clip": ("CLIP",),
            "gligen_textbox_model": ("GLIGEN",),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "width": ("INT", {"default": 64, **size}),
            "height": ("INT", {"default": 64, **size}),
            "x": ("INT", dict(place)),
            "y": ("INT", dict(place)),
        }}

    def append(self, conditioning_to: Conditioning, clip: ClipHandle, gligen_textbox_model: Gligen, text: str,
               width: int, height: int, x: int, y: int) -> tuple[Conditioning]:
        from engine.gligen import Gligen

        if not isinstance(gligen_textbox_model, Gligen):
            raise input_error("GLIGENTextBoxApply", "gligen_textbox_model",
                              f"expected a GLIGEN from GLIGENLoader, got {type(gligen_textbox_model).__name__}")
        _, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
        if int(pooled.shape[-1]) != gligen_textbox_model.key_dim:
            raise input_error("GLIGENTextBoxApply", "clip",
                              f"the text encoder's pooled output is {int(pooled.shape[-1])} wide but the GLIGEN "
                              f"model expects {gligen_textbox_model.key_dim}; use the CLIP of the GLIGEN's base model")
        box = (pooled, height // 8, width // 8, y // 8, x // 8)
        out = []
        for cond, opts in conditioning_to:
            new = dict(opts)
            previous = list(new["gligen"][2]) if "gligen" in new else []
            new["gligen"] = ("position", gligen_textbox_model, previous + [box])
            out.append([cond, new])
        return (out,)


class InstructPixToPixConditioning(BuiltinNode):
    """Attach the image latent an InstructPix2Pix model edits to both conditionings; the latent output is an
    empty latent of the image's size."""

    CATEGORY = "conditioning/instructpix2pix"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",),
                             "pixels": ("IMAGE",)}}

    def execute(self, positive: Conditioning, negative: Conditioning, pixels: torch.Tensor,
                vae: VaeHandle) -> tuple[Conditioning, Conditioning, Latent]:
        import torch

        cropped, _, _ = center_crop_to_multiple(pixels)
        concat_latent = vae.encode(cropped[..., :3])
        out = [[[cond, {**opts, "concat_latent_image": concat_latent}] for cond, opts in conditioning]
               for conditioning in (positive, negative)]
        return out[0], out[1], {"samples": torch.zeros_like(concat_latent)}


NODES = [DiffusersLoader, HypernetworkLoader, GLIGENLoader, GLIGENTextBoxApply, InstructPixToPixConditioning]
