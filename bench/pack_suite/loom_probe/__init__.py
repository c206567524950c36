"""The pack suite's probe: output nodes that turn any value into a checkable text in the prompt's history.

Copied next to the packs under test; smoke graphs end in `LoomProbeText` (str of the value) or
`LoomProbeShape` (the shape of a tensor, or of a LATENT's samples).
"""


class _Any(str):
    def __ne__(self, other):  # accepts every type, like ComfyUI packs' own "*" wildcards
        return False


ANY = _Any("*")


class LoomProbeText:
    CATEGORY = "loom/probe"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "show"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY, {})}}

    def show(self, value):
        return {"ui": {"text": [str(value)]}}


class LoomProbeShape:
    CATEGORY = "loom/probe"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "show"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY, {})}}

    def show(self, value):
        if isinstance(value, dict) and "samples" in value:
            value = value["samples"]
        return {"ui": {"text": [str(list(value.shape))]}}


NODE_CLASS_MAPPINGS = {"LoomProbeText": LoomProbeText, "LoomProbeShape": LoomProbeShape}
