"""A fixture pack with a web extension Loom's editor can run: a widget, canvas and node menu entries."""


class ExtFixtureNode:
    CATEGORY = "fixtures"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "x"})}}

    def run(self, text):
        return (text,)


NODE_CLASS_MAPPINGS = {"ExtFixtureNode": ExtFixtureNode}
WEB_DIRECTORY = "./web"
