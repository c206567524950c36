"""Runs `pip install` at import, with a harmless stand-in `pip` of its own (it only echoes its arguments)."""
import os
import subprocess
import tempfile

_folder = tempfile.mkdtemp(prefix="loom-fake-pip-")
_pip = os.path.join(_folder, "pip")
with open(_pip, "w") as f:
    f.write("#!/bin/sh\necho installed \"$@\"\n")
os.chmod(_pip, 0o755)
RESULT = subprocess.run([_pip, "install", "somepkg"], capture_output=True, text=True)


class FakePipNode:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (RESULT.stdout,)


NODE_CLASS_MAPPINGS = {"FakePipNode": FakePipNode}
