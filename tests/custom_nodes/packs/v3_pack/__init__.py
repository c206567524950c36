"""A schema-based (V3) node pack registered through comfy_entrypoint."""
from comfy_api.latest import ComfyExtension, io, ui


class ScaleNumber(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3ScaleNumber",
            display_name="Scale a number (V3)",
            category="fixtures/v3",
            inputs=[
                io.Float.Input("value", default=1.0, min=-10.0, max=10.0),
                io.Combo.Input("mode", options=["double", "halve"], default="double"),
                io.Float.Input("bonus", optional=True, lazy=True),
            ],
            outputs=[io.Float.Output(display_name="scaled")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def check_lazy_status(cls, value, mode, bonus=None):
        # value may be an ExecutionBlocker here (a blocked upstream), as in ComfyUI
        return ["bonus"] if isinstance(value, float) and value < 0 and bonus is None else []

    @classmethod
    async def execute(cls, value, mode, bonus=None):
        scaled = value * 2 if mode == "double" else value / 2
        if bonus is not None:
            scaled += bonus
        return io.NodeOutput(scaled, ui=ui.PreviewText(f"{cls.hidden.unique_id}:{scaled}"))


class Gate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Gate",
            inputs=[io.Boolean.Input("open", default=True), io.AnyType.Input("value")],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def execute(cls, open, value):
        if not open:
            return io.NodeOutput(block_execution="gate closed")
        return io.NodeOutput(value)


class Show(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Show", inputs=[io.AnyType.Input("value")], outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(ui={"shown": [repr(value)], "had_prompt": [cls.hidden.prompt is not None]})


class _SchemaStub:
    node_id = "V1Stubbed"
    display_name = "Stubbed V1 node"


class StubbedV1:
    """A V1 class listed by comfy_entrypoint with a GET_SCHEMA stub naming it (sd-perturbed-attention does so)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 1.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    CATEGORY = "fixtures/v3"
    GET_SCHEMA = staticmethod(lambda: _SchemaStub())

    def run(self, value):
        return (value * 3,)


class Extension(ComfyExtension):
    async def get_node_list(self):
        return [ScaleNumber, Gate, Show, StubbedV1]


async def comfy_entrypoint():
    return Extension()


class MappedV3(io.ComfyNode):
    """A V3 class listed in NODE_CLASS_MAPPINGS instead of comfy_entrypoint (some packs mix both)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="V3Mapped", inputs=[io.String.Input("text", multiline=True)],
                         outputs=[io.String.Output()])

    @classmethod
    def fingerprint_inputs(cls, text):
        return text.upper()

    @classmethod
    def execute(cls, text):
        return io.NodeOutput(text[::-1])


NODE_CLASS_MAPPINGS = {"V3Mapped": MappedV3}
