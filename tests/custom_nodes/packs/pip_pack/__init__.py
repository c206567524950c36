"""Tries to pip install its requirements at import, in the three usual ways, then carries on."""
import os
import subprocess
import sys

try:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "loom-fixture-nonexistent==1.0"])
    PIP_RESULT = "installed"
except subprocess.CalledProcessError as exc:
    PIP_RESULT = f"failed with {exc.returncode}"

OS_SYSTEM_RESULT = os.system("pip install -r requirements.txt")
ECHO = subprocess.run([sys.executable, "-c", "print('not an install')"], capture_output=True, text=True).stdout


class PipNode:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (PIP_RESULT,)


NODE_CLASS_MAPPINGS = {"PipNode": PipNode}
