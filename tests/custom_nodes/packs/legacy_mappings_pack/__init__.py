"""Old style: adds its nodes straight into ComfyUI's `nodes.NODE_CLASS_MAPPINGS` (one collides)."""
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
