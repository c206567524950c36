"""Imports the ComfyUI modules packs commonly use, and expands into a sub-graph with GraphBuilder."""
import comfy.cli_args
import comfy.model_management
import comfy.samplers
import comfy.utils
import folder_paths
import latent_preview
import node_helpers
import torch
from comfy.comfy_types import IO, ComfyNodeABC, InputTypeDict
from comfy_execution.graph_utils import GraphBuilder

import nodes

assert callable(latent_preview.prepare_callback) and callable(node_helpers.conditioning_set_values)
assert callable(folder_paths.get_annotated_filepath)


class SamplerChoice(ComfyNodeABC):
    RETURN_TYPES = (IO.STRING, IO.INT)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,),
            "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "size": (IO.INT, {"default": 64, "max": nodes.MAX_RESOLUTION}),
        }}

    def run(self, sampler_name, scheduler, size):
        return (f"{sampler_name}/{scheduler}/{comfy.model_management.get_torch_device().type}", size)


class Resize(ComfyNodeABC):
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "width": ("INT", {"default": 8}),
                             "height": ("INT", {"default": 4})}}

    def run(self, image, width, height):
        samples = image.movedim(-1, 1)
        out = comfy.utils.common_upscale(samples, width, height, "bilinear", "center")
        return (out.movedim(1, -1).to(comfy.model_management.intermediate_device()),)


class AddTwice:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 1})}}

    def run(self, a):
        graph = GraphBuilder()
        first = graph.node("CoreNode", value=a)
        second = graph.node("CoreNode", value=first.out(0))
        return {"result": (second.out(0),), "expand": graph.finalize()}


PREVIEW_METHOD = comfy.cli_args.args.preview_method
ZEROS = torch.zeros(1)
NODE_CLASS_MAPPINGS = {"SamplerChoice": SamplerChoice, "Resize": Resize, "AddTwice": AddTwice}
