"""One fine node, one whose INPUT_TYPES raises, one with a malformed input entry, one without FUNCTION."""


class FineNode:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "ok"})}}

    def run(self, text):
        return (text,)


class RaisingInputs(FineNode):
    @classmethod
    def INPUT_TYPES(cls):
        raise KeyError("missing_model_list")


class MalformedInputs(FineNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": "STRING"}}


class NoFunction:
    RETURN_TYPES = ("INT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}


NODE_CLASS_MAPPINGS = {
    "FineNode": FineNode,
    "RaisingInputs": RaisingInputs,
    "MalformedInputs": MalformedInputs,
    "NoFunction": NoFunction,
}
