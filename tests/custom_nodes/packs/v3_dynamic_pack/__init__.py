"""A V3 pack using the dynamic inputs of comfy_api's io: Autogrow, DynamicCombo and MatchType."""
from enum import Enum

from comfy_api.latest import ComfyExtension, io


class Mode(str, Enum):
    SUM = "sum"
    SCALED = "scaled sum"


class GrowSum(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        template = io.Autogrow.TemplatePrefix(io.Float.Input("x", min=-100.0, max=100.0), prefix="x", min=1, max=4)
        return io.Schema(
            node_id="V3GrowSum",
            category="fixtures/v3",
            inputs=[
                io.Autogrow.Input("xs", template=template),
                io.DynamicCombo.Input("mode", options=[
                    io.DynamicCombo.Option(Mode.SUM, []),
                    io.DynamicCombo.Option(Mode.SCALED, [io.Float.Input("factor", default=2.0)]),
                ]),
            ],
            outputs=[io.Float.Output(display_name="total")],
        )

    @classmethod
    def validate_inputs(cls, xs, mode):
        if mode["mode"] == Mode.SCALED and mode.get("factor") == 0:
            return "factor must not be 0"
        return True

    @classmethod
    def execute(cls, xs, mode):
        total = sum(xs.values())
        if mode["mode"] == Mode.SCALED:
            total *= mode["factor"]
        return io.NodeOutput(total)


class Pick(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        template = io.MatchType.Template("t", [io.Float, io.Int])
        names = io.Autogrow.TemplateNames(io.MatchType.Input("value", template), names=["first", "second"], min=1)
        return io.Schema(
            node_id="V3Pick",
            category="fixtures/v3",
            inputs=[io.Autogrow.Input("values", template=names), io.Int.Input("index", default=0, min=0, max=1)],
            outputs=[io.MatchType.Output(template, display_name="picked")],
        )

    @classmethod
    def execute(cls, values, index):
        return io.NodeOutput(list(values.values())[index])


class Extension(ComfyExtension):
    async def get_node_list(self):
        return [GrowSum, Pick]


async def comfy_entrypoint():
    return Extension()
