"""Node definitions served by the fake server: the txt2img / img2img / inpaint core, as /object_info shapes."""
from __future__ import annotations

from typing import Any

SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m"]
SCHEDULERS = ["normal", "karras", "simple"]


def _def(name: str, display: str, category: str, required: dict[str, Any], outputs: list[str],
         output_names: list[str] | None = None, output_node: bool = False,
         optional: dict[str, Any] | None = None) -> dict[str, Any]:
    inp: dict[str, Any] = {"required": required}
    order: dict[str, list[str]] = {"required": list(required)}
    if optional:
        inp["optional"] = optional
        order["optional"] = list(optional)
    return {
        "input": inp, "input_order": order, "output": outputs, "output_is_list": [False] * len(outputs),
        "output_name": output_names or list(outputs), "name": name, "display_name": display,
        "description": "", "python_module": "nodes", "category": category, "output_node": output_node,
    }


def node_defs(checkpoints: list[str], inputs: list[str]) -> dict[str, dict[str, Any]]:
    """The fake server's /object_info, with the given model and input-image lists."""
    return {
        "CheckpointLoaderSimple": _def("CheckpointLoaderSimple", "Load Checkpoint", "loaders",
                                       {"ckpt_name": [checkpoints, {}]}, ["MODEL", "CLIP", "VAE"]),
        "CLIPTextEncode": _def("CLIPTextEncode", "CLIP Text Encode (Prompt)", "conditioning",
                               {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
                                "clip": ["CLIP", {}]}, ["CONDITIONING"]),
        "EmptyLatentImage": _def("EmptyLatentImage", "Empty Latent Image", "latent",
                                 {"width": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                                  "height": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                                  "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]}, ["LATENT"]),
        "KSampler": _def("KSampler", "KSampler", "sampling", {
            "model": ["MODEL", {}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615, "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [SAMPLERS, {}], "scheduler": [SCHEDULERS, {}],
            "positive": ["CONDITIONING", {}], "negative": ["CONDITIONING", {}],
            "latent_image": ["LATENT", {}],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}, ["LATENT"]),
        "VAEDecode": _def("VAEDecode", "VAE Decode", "latent", {"samples": ["LATENT", {}], "vae": ["VAE", {}]},
                          ["IMAGE"]),
        "VAEEncode": _def("VAEEncode", "VAE Encode", "latent", {"pixels": ["IMAGE", {}], "vae": ["VAE", {}]},
                          ["LATENT"]),
        "SetLatentNoiseMask": _def("SetLatentNoiseMask", "Set Latent Noise Mask", "latent/inpaint",
                                   {"samples": ["LATENT", {}], "mask": ["MASK", {}]}, ["LATENT"]),
        "SaveImage": _def("SaveImage", "Save Image", "image",
                          {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                          [], output_node=True),
        "PreviewImage": _def("PreviewImage", "Preview Image", "image", {"images": ["IMAGE", {}]}, [],
                             output_node=True),
        "LoadImage": _def("LoadImage", "Load Image", "image",
                          {"image": [sorted(inputs), {"image_upload": True}]}, ["IMAGE", "MASK"]),
        "ImageInvert": _def("ImageInvert", "Invert Image", "image", {"image": ["IMAGE", {}]}, ["IMAGE"]),
        "StringConcat": _def("StringConcat", "Concatenate", "utils/string",
                             {"string_a": ["STRING", {"forceInput": True}], "string_b": ["STRING,INT", {}],
                              "flag": ["BOOLEAN", {"default": True}]}, ["STRING"]),
    }
