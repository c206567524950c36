"""Old-style pack: copies its JavaScript into ComfyUI's web/extensions at import."""
import os

import folder_paths

target = os.path.join(os.path.dirname(os.path.realpath(folder_paths.__file__)), "web", "extensions", "web_writer_pack")
os.makedirs(target, exist_ok=True)
with open(os.path.join(target, "legacy.js"), "w") as fh:
    fh.write("console.log('web_writer_pack');\n")


class WebWriterNode:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return {}


NODE_CLASS_MAPPINGS = {"WebWriterNode": WebWriterNode}
