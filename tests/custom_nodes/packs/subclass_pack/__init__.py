"""Subclasses a core node found through ComfyUI's `nodes` module."""
import nodes


class DoubledCore(nodes.CoreNode):
    def run(self, value):
        (result,) = super().run(value)
        return (result * 2,)


class LazyNodesUser:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "max": nodes.MAX_RESOLUTION})}}

    def run(self, value):
        import nodes as comfy_nodes  # packs import `nodes` lazily at run time too

        return (comfy_nodes.NODE_CLASS_MAPPINGS["CoreNode"]().run(value)[0] + 1,)


NODE_CLASS_MAPPINGS = {"DoubledCore": DoubledCore, "LazyNodesUser": LazyNodesUser}
