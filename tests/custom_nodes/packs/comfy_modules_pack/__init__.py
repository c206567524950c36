"""Imports the ComfyUI modules added for popular packs (issue 25) the way those packs do, at module level."""
import comfy
import comfy.k_diffusion.sampling as k_sampling
import comfy.latent_formats
import comfy.lora
import comfy.ops
import comfy.sampler_helpers
import comfy.sd1_clip
import comfy_extras.nodes_mask
import execution
import torch
from comfy.k_diffusion import utils as k_utils
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
from comfy.model_patcher import set_model_options_patch_replace
from comfy.sdxl_clip import SDXLClipG, SDXLClipModel, SDXLRefinerClipModel
from comfy.text_encoders.flux import FluxClipModel
from comfy.text_encoders.sd3_clip import SD3ClipModel, T5XXLModel
from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise, Noise_RandomNoise
from execution import full_type_name


class ModuleFacts:
    """Returns what the shims answer, so tests can check them through a registered pack node."""

    CATEGORY = "fixtures"
    RETURN_TYPES = ("DICT", "STRING")
    OUTPUT_NODE = True
    OUTPUT_TOOLTIPS = ("only one tooltip, as some real packs declare",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "hidden": {"saved": (["CHOOSE"],), "unique_id": "UNIQUE_ID"}}

    def run(self, **_):
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        facts = {
            "samplers_loaded": hasattr(comfy, "samplers") and hasattr(comfy, "sd"),
            "sdxl_scale": comfy.latent_formats.SDXL().scale_factor,
            "sd15_channels": comfy.latent_formats.SD15.latent_channels,
            "karras": k_sampling.get_sigmas_karras(4, 0.1, 10.0).tolist(),
            "append_dims": list(k_utils.append_dims(torch.ones(2), 4).shape),
            "to_d": k_sampling.to_d(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([1.0])).tolist(),
            "noise_shape": list(Noise_RandomNoise(3).generate_noise(latent).shape),
            "noise_same_seed": bool(torch.equal(Noise_RandomNoise(3).generate_noise(latent),
                                                Noise_RandomNoise(3).generate_noise(latent))),
            "empty_noise_zero": bool(Noise_EmptyNoise().generate_noise(latent).abs().sum() == 0),
            "invert_mask": comfy_extras.nodes_mask.NODE_CLASS_MAPPINGS.get("InvertMask") is not None,
            "convert_cond": comfy.sampler_helpers.convert_cond([[torch.ones(1), {"strength": 0.5}]])[0]["strength"],
            "additional_models": comfy.sampler_helpers.get_additional_models({}, torch.float32),
            "mask_shape": list(comfy.sampler_helpers.prepare_mask(torch.ones(1, 16, 16), torch.Size((2, 4, 8, 8)),
                                                                 torch.device("cpu")).shape),
            "linear_type": comfy.ops.manual_cast.Linear.__name__,
            "full_type_name": full_type_name(ModuleFacts),
            "unet_is_loom": UNetModel.__module__,
            "clip_sets": [isinstance({"clip_l": 1, "clip_g": 2}, SDXLClipModel),
                          isinstance({"clip_g": 2}, SDXLRefinerClipModel),
                          isinstance({"clip_l": 1}, comfy.sd1_clip.SD1ClipModel),
                          isinstance(object(), SDXLClipG)],
            "flow_clip_sets": [isinstance({"clip_l": 1, "clip_g": 2, "t5xxl": 3}, SD3ClipModel),
                               isinstance({"clip_l": 1, "t5xxl": 3}, FluxClipModel),
                               isinstance({"clip_l": 1, "t5xxl": 3}, SD3ClipModel),
                               isinstance({"clip_l": 1, "clip_g": 2, "t5xxl": 3}, SDXLClipModel),
                               isinstance(object(), T5XXLModel)],
            "lora_keys": callable(comfy.lora.model_lora_keys_unet),
        }
        return (facts, "ok")


class PatchReplace:
    CATEGORY = "fixtures"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        before = {"transformer_options": {"patches_replace": {"attn1": {("input", 1): "old"}}}}
        copied = dict(before)
        after = set_model_options_patch_replace(before, "new", "attn1", "middle", 0, 0)
        return (repr((after is before, after["transformer_options"]["patches_replace"]["attn1"],
                      copied["transformer_options"]["patches_replace"]["attn1"])),)


class ValidatePrompt:
    CATEGORY = "fixtures"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self, prompt):
        import asyncio

        return (asyncio.run(execution.validate_prompt("p1", prompt, None)),)


NODE_CLASS_MAPPINGS = {"ModuleFacts": ModuleFacts, "PatchReplace": PatchReplace, "ValidatePrompt": ValidatePrompt}
