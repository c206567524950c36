"""A node that loads fine but raises when it runs."""


class Explode:
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 1.0})}}

    def run(self, value):
        raise ValueError(f"Explode always fails (value={value})")


NODE_CLASS_MAPPINGS = {"Explode": Explode}
