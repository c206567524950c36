"""Has a helper module called utils.py, like helper_b."""
from .sub.deep import DEEP
from .utils import describe


class HelperA:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (describe() + "/" + DEEP,)


NODE_CLASS_MAPPINGS = {"HelperA": HelperA}
