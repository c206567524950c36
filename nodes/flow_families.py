"""Flow-family nodes (Flux.1, SD3.x): model-sampling shifts, distilled guidance, Flux text encode, SD3 latents,
skip-layer guidance, Flux Kontext reference latents (ReferenceLatent and its placement method)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.conditioning import set_values
from nodes.loaders import _loading_error, _resolve
from nodes.services import MAX_RESOLUTION

__all__ = ["TripleCLIPLoader", "CLIPTextEncodeSD3", "EmptySD3LatentImage", "FluxGuidance", "FluxDisableGuidance", "CLIPTextEncodeFlux",
           "ModelSamplingFlux", "ModelSamplingSD3", "ModelSamplingAuraFlow", "SkipLayerGuidanceDiT", "SkipLayerGuidanceSD3",
           "SkipLayerGuidanceDiTSimple", "ReferenceLatent", "FluxKontextMultiReferenceLatentMethod", "NODES"]

Conditioning = list[list[Any]]


class TripleCLIPLoader(BuiltinNode):
    """Load CLIP-L, CLIP-G and T5-XXL files as one SD3 CLIP (any order: each file is recognised by content)."""

    DISPLAY_NAME = "TripleCLIPLoader"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nsd3: clip-l, clip-g, t5"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    FILE_INPUTS: ClassVar[Mapping[str, str]] = {"clip_name1": "text_encoders", "clip_name2": "text_encoders",
                                                "clip_name3": "text_encoders"}

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        files = cls._services().paths.get_filename_list("text_encoders")
        return {"required": {"clip_name1": (files,), "clip_name2": (files,), "clip_name3": (files,)}}

    def load_clip(self, clip_name1: str, clip_name2: str, clip_name3: str) -> tuple[Any]:
        from engine import loading

        services = self._services()
        paths = [_resolve("TripleCLIPLoader", services, "text_encoders", f"clip_name{i}", name)
                 for i, name in ((1, clip_name1), (2, clip_name2), (3, clip_name3))]
        try:
            clip = loading.load_clip(paths, "sd3", manager=services.model_manager())
        except Exception as exc:  # engine errors of any kind: name node, input and files
            raise _loading_error("TripleCLIPLoader", "clip_name1", " + ".join(paths), exc) from exc
        return (clip,)


class CLIPTextEncodeSD3(BuiltinNode):
    """Encode separate CLIP-L, CLIP-G and T5 prompts with an SD3 CLIP."""

    DISPLAY_NAME = "CLIPTextEncodeSD3"
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        text = ("STRING", {"multiline": True, "dynamicPrompts": True})
        return {"required": {"clip": ("CLIP",), "clip_l": text, "clip_g": text, "t5xxl": text,
                             "empty_padding": (["none", "empty_prompt"],)}}

    def encode(self, clip: Any, clip_l: str, clip_g: str, t5xxl: str, empty_padding: str) -> tuple[Conditioning]:
        if clip is None or not {"l", "g", "t5xxl"} <= set(getattr(clip, "tokenizers", {})):
            raise input_error("CLIPTextEncodeSD3", "clip", "needs an SD3 CLIP (clip_l + clip_g + t5xxl: "
                              "TripleCLIPLoader or an all-in-one SD3 checkpoint)")
        no_padding = empty_padding == "none"
        tokens = clip.tokenize(clip_g)
        if not clip_g and no_padding:
            tokens["g"] = []
        tokens["l"] = [] if not clip_l and no_padding else clip.tokenize(clip_l)["l"]
        tokens["t5xxl"] = [] if not t5xxl and no_padding else clip.tokenize(t5xxl)["t5xxl"]
        if len(tokens["l"]) != len(tokens["g"]):
            empty = clip.tokenize("")
            while len(tokens["l"]) < len(tokens["g"]):
                tokens["l"] += empty["l"]
            while len(tokens["l"]) > len(tokens["g"]):
                tokens["g"] += empty["g"]
        return (clip.encode_from_tokens_scheduled(tokens),)


class EmptySD3LatentImage(BuiltinNode):
    """Zeros ``[batch, 16, height//8, width//8]`` (the SD3 / Flux latent)."""

    DISPLAY_NAME = "EmptySD3LatentImage"
    CATEGORY = "latent/sd3"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        import torch

        return ({"samples": torch.zeros([batch_size, 16, height // 8, width // 8])},)


class FluxGuidance(BuiltinNode):
    """Set the distilled guidance strength Flux-dev embeds (no effect on schnell)."""

    DISPLAY_NAME = "FluxGuidance"
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    def append(self, conditioning: Conditioning, guidance: float) -> tuple[Conditioning]:
        return (set_values(conditioning, {"guidance": guidance}),)


class FluxDisableGuidance(BuiltinNode):
    """Remove the guidance embedding from the model call entirely."""

    DISPLAY_NAME = "FluxDisableGuidance"
    CATEGORY = "advanced/conditioning/flux"
    DESCRIPTION = "This node completely disables the guidance embed on Flux and Flux like models"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def append(self, conditioning: Conditioning) -> tuple[Conditioning]:
        return (set_values(conditioning, {"guidance": None}),)


class ReferenceLatent(BuiltinNode):
    """Append a latent to every entry's `reference_latents` (Flux Kontext editing; chain it for several)."""

    CATEGORY = "advanced/conditioning/edit_models"
    DESCRIPTION = ("This node sets the guiding latent for an edit model. If the model supports it you can chain "
                   "multiple to set multiple reference images.")
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",)}, "optional": {"latent": ("LATENT",)}}

    def execute(self, conditioning: Conditioning, latent: Mapping[str, Any] | None = None) -> tuple[Conditioning]:
        if latent is None:
            return (conditioning,)
        samples = latent.get("samples") if isinstance(latent, Mapping) else None
        if getattr(samples, "ndim", None) != 4:
            raise input_error("ReferenceLatent", "latent", "expected a LATENT with image samples [B,C,H,W], got "
                              f"{getattr(samples, 'shape', type(samples).__name__)}")
        return (set_values(conditioning, {"reference_latents": [samples]}, append=True),)


class FluxKontextMultiReferenceLatentMethod(BuiltinNode):
    """Choose how an edit model places its reference latents (rotary positions): offset, index or uxo (UNO / USO)
    on Flux.1; index_timestep_zero is for Flux 2 / Qwen-Image edit models, which Loom does not load."""

    DISPLAY_NAME = "Edit Model Reference Method"
    CATEGORY = "advanced/conditioning/flux"
    EXPERIMENTAL = True
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "reference_latents_method": (["offset", "index", "uxo/uno", "index_timestep_zero"],
                                                          {"advanced": True})}}

    def execute(self, conditioning: Conditioning, reference_latents_method: str) -> tuple[Conditioning]:
        method = "uxo" if "uxo" in reference_latents_method or "uso" in reference_latents_method \
            else reference_latents_method
        return (set_values(conditioning, {"reference_latents_method": method}),)


class CLIPTextEncodeFlux(BuiltinNode):
    """Encode separate CLIP-L and T5 prompts with a Flux CLIP, and set the guidance."""

    DISPLAY_NAME = "CLIPTextEncodeFlux"
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "clip": ("CLIP",),
            "clip_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "t5xxl": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
        }}

    def encode(self, clip: Any, clip_l: str, t5xxl: str, guidance: float) -> tuple[Conditioning]:
        if clip is None:
            raise input_error("CLIPTextEncodeFlux", "clip", "no CLIP connected (the loader returned none)")
        tokens = clip.tokenize(clip_l)
        if "t5xxl" not in tokens:
            raise input_error("CLIPTextEncodeFlux", "clip", "this CLIP has no T5 encoder; load clip_l + t5xxl "
                              "with DualCLIPLoader type flux")
        tokens["t5xxl"] = clip.tokenize(t5xxl)["t5xxl"]
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance}),)


def _shift_input(default: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.01})


def _flow_patch(model: Any, sampling: Any) -> Any:
    if getattr(model.model_sampling, "prediction", None) != "flow":
        raise ValueError(f"this node needs a flow-matching model (SD3 / Flux / AuraFlow); the model has "
                         f"{model.model_sampling!r}")
    patched = model.clone()
    patched.model_sampling = sampling
    return patched


class ModelSamplingSD3(BuiltinNode):
    """Discrete flow schedule with a time shift (SD3: 3.0); the network's timestep is sigma x 1000."""

    DISPLAY_NAME = "ModelSamplingSD3"
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    MULTIPLIER = 1000.0

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "shift": _shift_input(3.0)}}

    def patch(self, model: Any, shift: float) -> tuple[Any]:
        from engine.sampling.flow_sampling import ModelSamplingDiscreteFlow

        try:
            return (_flow_patch(model, ModelSamplingDiscreteFlow(shift, self.MULTIPLIER)),)
        except ValueError as exc:
            raise input_error(type(self).__name__, "model", str(exc)) from exc


class ModelSamplingAuraFlow(ModelSamplingSD3):
    """Discrete flow schedule with a time shift and timestep = sigma (AuraFlow: 1.73)."""

    DISPLAY_NAME = "ModelSamplingAuraFlow"
    FUNCTION = "patch_aura"
    MULTIPLIER = 1.0

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"model": ("MODEL",), "shift": _shift_input(1.73)}}

    def patch_aura(self, model: Any, shift: float) -> tuple[Any]:
        return self.patch(model, shift)


class ModelSamplingFlux(BuiltinNode):
    """Flux's resolution-dependent shift: linear in the image's 16x16-patch count from base to max shift."""

    DISPLAY_NAME = "ModelSamplingFlux"
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "max_shift": _shift_input(1.15),
            "base_shift": _shift_input(0.5),
            "width": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}),
        }}

    def patch(self, model: Any, max_shift: float, base_shift: float, width: int, height: int) -> tuple[Any]:
        from engine.sampling.flow_sampling import ModelSamplingFlux as Sampling
        from engine.sampling.flow_sampling import flux_resolution_shift

        try:
            return (_flow_patch(model, Sampling(flux_resolution_shift(width, height, max_shift, base_shift))),)
        except ValueError as exc:
            raise input_error("ModelSamplingFlux", "model", str(exc)) from exc


def _percent(default: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001})


class SkipLayerGuidanceDiT(BuiltinNode):
    """After CFG, push away from a third pass with some DiT blocks skipped (MMDiT joint blocks count as double)."""

    DISPLAY_NAME = "SkipLayerGuidanceDiT"
    CATEGORY = "advanced/guidance"
    DESCRIPTION = "Generic version of SkipLayerGuidance node that can be used on every DiT model."
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "skip_guidance"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "double_layers": ("STRING", {"default": "7, 8, 9"}),
            "single_layers": ("STRING", {"default": "7, 8, 9"}),
            "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
            "start_percent": _percent(0.01),
            "end_percent": _percent(0.15),
            "rescaling_scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.01}),
        }}

    def skip_guidance(self, model: Any, scale: float, start_percent: float, end_percent: float,
                      double_layers: str = "", single_layers: str = "", rescaling_scale: float = 0.0) -> tuple[Any]:
        from engine.sampling.skip_layer import parse_layers, skip_layer_post_cfg

        double, single = parse_layers(double_layers), parse_layers(single_layers)
        if not double and not single:
            return (model,)
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(skip_layer_post_cfg(
            model.model_sampling, double, single, scale, start_percent, end_percent, rescaling_scale))
        return (patched,)


class SkipLayerGuidanceSD3(SkipLayerGuidanceDiT):
    """Skip-layer guidance over SD3's joint blocks (SD3.5 medium: layers 7, 8, 9)."""

    DISPLAY_NAME = "SkipLayerGuidanceSD3"
    FUNCTION = "skip_guidance_sd3"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "layers": ("STRING", {"default": "7, 8, 9", "multiline": False}),
            "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
            "start_percent": _percent(0.01),
            "end_percent": _percent(0.15),
        }}

    def skip_guidance_sd3(self, model: Any, layers: str, scale: float, start_percent: float,
                          end_percent: float) -> tuple[Any]:
        return self.skip_guidance(model, scale, start_percent, end_percent, double_layers=layers)


class SkipLayerGuidanceDiTSimple(BuiltinNode):
    """Skip-layer guidance that only changes the negative pass (no third model call)."""

    DISPLAY_NAME = "SkipLayerGuidanceDiTSimple"
    CATEGORY = "advanced/guidance"
    DESCRIPTION = "Simple version of the SkipLayerGuidanceDiT node that only modifies the uncond pass."
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "skip_guidance"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "model": ("MODEL",),
            "double_layers": ("STRING", {"default": "7, 8, 9"}),
            "single_layers": ("STRING", {"default": "7, 8, 9"}),
            "start_percent": _percent(0.0),
            "end_percent": _percent(1.0),
        }}

    def skip_guidance(self, model: Any, start_percent: float, end_percent: float, double_layers: str = "",
                      single_layers: str = "") -> tuple[Any]:
        from engine.sampling.skip_layer import parse_layers, skip_layer_uncond

        double, single = parse_layers(double_layers), parse_layers(single_layers)
        if not double and not single:
            return (model,)
        patched = model.clone()
        patched.set_model_sampler_calc_cond_batch_function(
            skip_layer_uncond(model.model_sampling, double, single, start_percent, end_percent))
        return (patched,)


NODES = [TripleCLIPLoader, CLIPTextEncodeSD3, EmptySD3LatentImage, FluxGuidance, FluxDisableGuidance, CLIPTextEncodeFlux, ModelSamplingFlux,
         ModelSamplingSD3, ModelSamplingAuraFlow, SkipLayerGuidanceDiT, SkipLayerGuidanceSD3,
         SkipLayerGuidanceDiTSimple, ReferenceLatent, FluxKontextMultiReferenceLatentMethod]
