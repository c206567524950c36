"""`comfy_api.latest.io`: typed inputs/outputs, `Schema`, `ComfyNode`, `NodeOutput` (spec 6.4).

Supported: the standard types, `Custom`, `MultiType`, `MatchType`, the dynamic inputs `Autogrow` and
`DynamicCombo` (the executor expands and folds them: executor/dynamic_inputs.py), widgets with their
options, hidden values, lazy inputs, lists, expansion and execution blocking. A V3 class becomes a V1
class through `ComfyNode._loom_as_v1()` (see `_v1.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class ControlAfterGenerate(str, Enum):
    fixed = "fixed"
    increment = "increment"
    decrement = "decrement"
    randomize = "randomize"


class Hidden(str, Enum):
    """Hidden values a node can ask for; read them as `cls.hidden.<name>` inside `execute`."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


def _drop_none(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in options.items() if v is not None}


class Input:
    """A socket input of `io_type` (set by each type class)."""

    io_type = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict[str, Any] | None = None,
                 raw_link: bool | None = None, advanced: bool | None = None, **unknown: Any) -> None:
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.options: dict[str, Any] = _drop_none(
            {"display_name": display_name, "tooltip": tooltip, "lazy": lazy, "rawLink": raw_link,
             "advanced": advanced}
        )
        self.options.update(extra_dict or {})

    def v1_type(self) -> Any:
        return self.io_type

    def as_v1(self) -> tuple[Any, dict[str, Any]]:
        return self.v1_type(), dict(self.options)


class WidgetInput(Input):
    """An input that can be a widget (literal value) as well as a socket."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                 socketless: bool | None = None, force_input: bool | None = None,
                 extra_dict: dict[str, Any] | None = None, raw_link: bool | None = None,
                 advanced: bool | None = None, **widget: Any) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
        self.default = default
        self.options.update(_drop_none({"default": default, "socketless": socketless, "forceInput": force_input}))
        self.options.update(_drop_none({_WIDGET_KEYS.get(k, k): v for k, v in widget.items()}))


_WIDGET_KEYS = {"display_mode": "display", "dynamic_prompts": "dynamicPrompts"}


class Output:
    """An output socket of `io_type`."""

    io_type = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False) -> None:
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list


def _type(name: str, io_type: str, widget: bool = False) -> type:
    base_input = WidgetInput if widget else Input
    namespace = {
        "io_type": io_type,
        "Input": type("Input", (base_input,), {"io_type": io_type, "__qualname__": f"{name}.Input"}),
        "Output": type("Output", (Output,), {"io_type": io_type, "__qualname__": f"{name}.Output"}),
        "__qualname__": name,
        "__module__": __name__,
    }
    return type(name, (), namespace)


Int = _type("Int", "INT", widget=True)
Float = _type("Float", "FLOAT", widget=True)
String = _type("String", "STRING", widget=True)
Boolean = _type("Boolean", "BOOLEAN", widget=True)
Image = _type("Image", "IMAGE")
Mask = _type("Mask", "MASK")
Latent = _type("Latent", "LATENT")
Conditioning = _type("Conditioning", "CONDITIONING")
Model = _type("Model", "MODEL")
Clip = _type("Clip", "CLIP")
Vae = _type("Vae", "VAE")
Sampler = _type("Sampler", "SAMPLER")
Sigmas = _type("Sigmas", "SIGMAS")
Noise = _type("Noise", "NOISE")
Guider = _type("Guider", "GUIDER")
ControlNet = _type("ControlNet", "CONTROL_NET")
ClipVision = _type("ClipVision", "CLIP_VISION")
ClipVisionOutput = _type("ClipVisionOutput", "CLIP_VISION_OUTPUT")
StyleModel = _type("StyleModel", "STYLE_MODEL")
Gligen = _type("Gligen", "GLIGEN")
UpscaleModel = _type("UpscaleModel", "UPSCALE_MODEL")
LoraModel = _type("LoraModel", "LORA_MODEL")
Audio = _type("Audio", "AUDIO")
Video = _type("Video", "VIDEO")
Webcam = _type("Webcam", "WEBCAM", widget=True)
Point = _type("Point", "POINT")
BBOX = _type("BBOX", "BBOX")
SEGS = _type("SEGS", "SEGS")
AnyType = _type("AnyType", "*")
BoundingBox = _type("BoundingBox", "BOUNDING_BOX", widget=True)
# socket types of other model families and tools: declared so packs' schemas using them register (Loom's own nodes
# produce none of these values)
WanCameraEmbedding = _type("WanCameraEmbedding", "WAN_CAMERA_EMBEDDING")
SVG = _type("SVG", "SVG")
LossMap = _type("LossMap", "LOSS_MAP")
Voxel = _type("Voxel", "VOXEL")
Mesh = _type("Mesh", "MESH")
Hooks = _type("Hooks", "HOOKS")
HookKeyframes = _type("HookKeyframes", "HOOK_KEYFRAMES")
TimestepsRange = _type("TimestepsRange", "TIMESTEPS_RANGE")
LatentOperation = _type("LatentOperation", "LATENT_OPERATION")
FlowControl = _type("FlowControl", "FLOW_CONTROL")
Accumulation = _type("Accumulation", "ACCUMULATION")
Load3DCamera = _type("Load3DCamera", "LOAD3D_CAMERA")
Load3D = _type("Load3D", "LOAD_3D")
Load3DAnimation = _type("Load3DAnimation", "LOAD_3D_ANIMATION")
Photomaker = _type("Photomaker", "PHOTOMAKER")
FaceAnalysis = _type("FaceAnalysis", "FACE_ANALYSIS")
MODEL_PATCH = _type("MODEL_PATCH", "MODEL_PATCH")
AudioEncoder = _type("AudioEncoder", "AUDIO_ENCODER")
AudioEncoderOutput = _type("AudioEncoderOutput", "AUDIO_ENCODER_OUTPUT")
Tracks = _type("Tracks", "TRACKS")


def _bounding_box_init(self: WidgetInput, id: str, display_name: str | None = None, optional: bool = False,
                       tooltip: str | None = None, socketless: bool = True, default: dict[str, int] | None = None,
                       component: str | None = None, force_input: bool | None = None) -> None:
    """ComfyUI's BOUNDING_BOX input: a dict ``{x, y, width, height}``, by default 0, 0, 512, 512."""
    box = dict(default) if default is not None else {"x": 0, "y": 0, "width": 512, "height": 512}
    WidgetInput.__init__(self, id, display_name, optional, tooltip, default=box, socketless=socketless,
                         force_input=force_input, component=component)


BoundingBox.Input.__init__ = _bounding_box_init  # type: ignore[attr-defined]


def Custom(io_type: str) -> type:
    """An ad-hoc type: `MyType = io.Custom("MY_TYPE")`; then `MyType.Input(...)` / `MyType.Output(...)`."""
    return _type(f"Custom_{io_type}", io_type)


class _ComboInput(WidgetInput):
    io_type = "COMBO"

    def __init__(self, id: str, options: Any = None, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                 control_after_generate: Any = None, upload: UploadType | None = None,
                 image_folder: FolderType | None = None, remote: Any = None, socketless: bool | None = None,
                 extra_dict: dict[str, Any] | None = None, raw_link: bool | None = None,
                 advanced: bool | None = None) -> None:
        if isinstance(options, type) and issubclass(options, Enum):
            options = [member.value for member in options]
        if isinstance(default, Enum):
            default = default.value
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, extra_dict,
                         raw_link, advanced, control_after_generate=control_after_generate,
                         image_folder=image_folder, remote=remote)
        self.options["options"] = list(options or [])
        if upload is not None:
            self.options[UploadType(upload).value] = True


class _ComboOutput(Output):
    """A COMBO output; given `options`, its type is that list of choices (as V1 nodes return a choice list, so it
    links to a COMBO input offering the same names)."""

    def __init__(self, id: str | None = None, display_name: str | None = None, options: list[Any] | None = None,
                 tooltip: str | None = None, is_output_list: bool = False) -> None:
        super().__init__(id, display_name, tooltip, is_output_list)
        self.options = list(options) if options is not None else []
        if self.options:
            self.io_type = self.options  # type: ignore[assignment]


class Combo:
    io_type = "COMBO"
    Input = _ComboInput
    Output = type("Output", (_ComboOutput,), {"io_type": "COMBO", "__qualname__": "Combo.Output"})


class MultiType:
    """An input accepting several types: V1's comma-joined type string."""

    class Input(Input):
        def __init__(self, id: Any, types: list[Any], display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, extra_dict: dict[str, Any] | None = None) -> None:
            name = id.id if isinstance(id, Input) else id
            super().__init__(name, display_name, optional, tooltip, extra_dict=extra_dict)
            self.types = [getattr(t, "io_type", t) for t in types]

        def v1_type(self) -> Any:
            return ",".join(str(t) for t in self.types)


def _io_name(t: Any) -> str:
    return str(getattr(t, "io_type", t))


def _sections(inputs: list[Input]) -> dict[str, dict[str, Any]]:
    """V1 ``{"required": {...}, "optional": {...}}`` of a list of inputs (empty sections left out)."""
    out: dict[str, dict[str, Any]] = {}
    for item in inputs:
        out.setdefault("optional" if item.optional else "required", {})[item.id] = item.as_v1()
    return out


class MatchType:
    """Inputs and outputs that take one type from a list, the same across the node (`COMFY_MATCHTYPE_V3`)."""

    io_type = "COMFY_MATCHTYPE_V3"

    class Template:
        def __init__(self, template_id: str, allowed_types: Any = None) -> None:
            self.template_id = template_id
            types = allowed_types if isinstance(allowed_types, (list, tuple)) else [allowed_types or "*"]
            self.allowed_types = [_io_name(t) for t in types]

        def as_dict(self) -> dict[str, Any]:
            return {"template_id": self.template_id, "allowed_types": ",".join(self.allowed_types)}

    class Input(Input):
        io_type = "COMFY_MATCHTYPE_V3"

        def __init__(self, id: str, template: MatchType.Template, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict[str, Any] | None = None, raw_link: bool | None = None,
                     advanced: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
            self.options["template"] = template.as_dict()

    class Output(Output):
        io_type = "COMFY_MATCHTYPE_V3"

        def __init__(self, template: MatchType.Template, id: str | None = None, display_name: str | None = None,
                     tooltip: str | None = None, is_output_list: bool = False) -> None:
            super().__init__(id, display_name or (None if id else "MATCHTYPE"), tooltip, is_output_list)


class Autogrow:
    """A group of inputs that grows as the user connects them (`COMFY_AUTOGROW_V3`); `execute` gets a dict."""

    io_type = "COMFY_AUTOGROW_V3"
    Type = dict

    class _Template:
        def __init__(self, input: Input) -> None:
            self.input = input
            if isinstance(input, WidgetInput):
                input.options["forceInput"] = True

        def as_dict(self) -> dict[str, Any]:
            return {"input": _sections([self.input])}

    class TemplatePrefix(_Template):
        """Members named `<prefix>0`, `<prefix>1`, ... up to `max`."""

        def __init__(self, input: Input, prefix: str, min: int = 1, max: int = 10) -> None:
            super().__init__(input)
            self.prefix, self.min, self.max = prefix, min, max

        def as_dict(self) -> dict[str, Any]:
            return {**super().as_dict(), "prefix": self.prefix, "min": self.min, "max": self.max}

    class TemplateNames(_Template):
        """Members with the given names, in order."""

        def __init__(self, input: Input, names: list[str], min: int = 1) -> None:
            super().__init__(input)
            self.names, self.min = list(names)[:100], min

        def as_dict(self) -> dict[str, Any]:
            return {**super().as_dict(), "names": self.names, "min": self.min}

    class Input(Input):
        io_type = "COMFY_AUTOGROW_V3"

        def __init__(self, id: str, template: Autogrow._Template, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict[str, Any] | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.options["template"] = template.as_dict()


class DynamicCombo:
    """A combo whose chosen option brings its own inputs (`COMFY_DYNAMICCOMBO_V3`); `execute` gets a dict."""

    io_type = "COMFY_DYNAMICCOMBO_V3"
    Type = dict

    class Option:
        def __init__(self, key: Any, inputs: list[Input]) -> None:
            self.key = key.value if isinstance(key, Enum) else str(key)
            self.inputs = inputs

        def as_dict(self) -> dict[str, Any]:
            return {"key": self.key, "inputs": _sections(self.inputs)}

    class Input(Input):
        io_type = "COMFY_DYNAMICCOMBO_V3"

        def __init__(self, id: str, options: list[DynamicCombo.Option], display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict[str, Any] | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.options["options"] = [option.as_dict() for option in options]


@dataclass
class Schema:
    """A V3 node's declaration (`define_schema()` returns one)."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    search_aliases: list[str] = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    accept_all_inputs: bool = False


class NodeOutput:
    """What `execute` returns: output values, optional `ui`, `expand` graph or `block_execution` message."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict[str, Any] | None = None,
                 block_execution: str | None = None) -> None:
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args if self.args else None


class HiddenHolder:
    """`cls.hidden` inside `execute`: `.unique_id`, `.prompt`, `.extra_pnginfo`, `.dynprompt`, ..."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.unique_id = values.get("unique_id")
        self.prompt = values.get("prompt")
        self.extra_pnginfo = values.get("extra_pnginfo")
        self.dynprompt = values.get("dynprompt")
        self.auth_token_comfy_org = values.get("auth_token_comfy_org")
        self.api_key_comfy_org = values.get("api_key_comfy_org")


class ComfyNode:
    """Base class of V3 nodes: implement `define_schema` and `execute` as classmethods."""

    hidden: HiddenHolder = HiddenHolder({})

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} must define the classmethod define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} must define the classmethod execute(**inputs)")

    @classmethod
    def _loom_as_v1(cls) -> type:
        """The V1 class Loom registers for this node (built once per class)."""
        cached: type | None = cls.__dict__.get("_loom_v1_class")
        if cached is None:
            from comfy_api.latest._v1 import to_v1

            cached = to_v1(cls)
            setattr(cls, "_loom_v1_class", cached)  # noqa: B010 (per class, not inherited)
        return cached


ComfyNodeV3 = ComfyNode
