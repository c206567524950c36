"""A single-file pack."""


class SingleFileNode:
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("FLOAT", {"default": 0.5})}}

    def run(self, x):
        return (x * 2,)


NODE_CLASS_MAPPINGS = {"SingleFileNode": SingleFileNode}
