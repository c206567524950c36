"""Imports, at module level, the ComfyUI names kijai/ComfyUI-KJNodes imports at module level."""
import comfy.patcher_extension
from comfy.ldm.flux.math import apply_rope
from comfy.ldm.lumina.model import FeedForward
from comfy.ldm.modules.attention import optimized_attention, wrap_attn
from comfy.patcher_extension import CallbacksMP, WrappersMP
from comfy.taesd.taesd import Block, Clamp, conv
from comfy.utils import tiled_scale_multidim
from comfy_api.latest import InputImpl, Types, io
from comfy_extras.nodes_mask import composite


@wrap_attn
def pack_attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False, skip_output_reshape=False,
                   **kwargs):
    """An attention function of the pack's own, decorated as KJNodes' sage-attention ones are."""
    return optimized_attention(q, k, v, heads, mask=mask, skip_reshape=skip_reshape,
                               skip_output_reshape=skip_output_reshape, **kwargs)


class KJImportsLoaded:
    CATEGORY = "fixtures"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"container": (Types.VideoContainer.as_input(),)}}

    def run(self, container):
        return (Types.VideoContainer.get_extension(container),)


NAMES = (comfy.patcher_extension, apply_rope, FeedForward, CallbacksMP, WrappersMP, Block, Clamp, conv,
         tiled_scale_multidim, InputImpl, io, composite)
NODE_CLASS_MAPPINGS = {"KJImportsLoaded": KJImportsLoaded}
