"""Old-style pack: puts its own folder on sys.path and imports a helper by its bare name."""
import os
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from sys_path_pack_helpers import ANSWER  # noqa: E402


class Answer:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (ANSWER,)


NODE_CLASS_MAPPINGS = {"SysPathAnswer": Answer}
