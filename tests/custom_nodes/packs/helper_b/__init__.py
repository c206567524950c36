"""Has a helper module called utils.py, like helper_a."""
from .sub.deep import DEEP
from .utils import describe


class HelperB:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (describe() + "/" + DEEP,)


NODE_CLASS_MAPPINGS = {"HelperB": HelperB}
