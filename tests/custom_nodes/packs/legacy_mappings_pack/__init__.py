"""Old style: adds its nodes straight into ComfyUI's `nodes.NODE_CLASS_MAPPINGS` (one collides), and its web
folder into `nodes.EXTENSION_WEB_DIRS` instead of declaring WEB_DIRECTORY (Impact Pack does so)."""
import os

import nodes


class LegacyNode:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (1,)


nodes.NODE_CLASS_MAPPINGS.update({"LegacyNode": LegacyNode, "CoreNode": LegacyNode})
nodes.NODE_DISPLAY_NAME_MAPPINGS["LegacyNode"] = "Legacy"
assert nodes.NODE_CLASS_MAPPINGS["LegacyNode"] is LegacyNode
nodes.EXTENSION_WEB_DIRS["legacy_mappings_pack"] = os.path.join(os.path.dirname(os.path.realpath(__file__)), "js")
