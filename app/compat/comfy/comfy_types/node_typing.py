"""ComfyUI's `comfy.comfy_types.node_typing`: the IO type names and the V1 node base class for typing."""
from __future__ import annotations

from abc import ABC
from enum import Enum
from typing import Any, ClassVar, Literal, TypedDict


class StrEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class IO(StrEnum):
    """Standard socket type names. `IO.ANY` ("*") matches every type."""

    STRING = "STRING"
    IMAGE = "IMAGE"
    MASK = "MASK"
    LATENT = "LATENT"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    FLOAT = "FLOAT"
    COMBO = "COMBO"
    CONDITIONING = "CONDITIONING"
    SAMPLER = "SAMPLER"
    SIGMAS = "SIGMAS"
    GUIDER = "GUIDER"
    NOISE = "NOISE"
    CLIP = "CLIP"
    CONTROL_NET = "CONTROL_NET"
    VAE = "VAE"
    MODEL = "MODEL"
    LORA_MODEL = "LORA_MODEL"
    LOSS_MAP = "LOSS_MAP"
    CLIP_VISION = "CLIP_VISION"
    CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
    STYLE_MODEL = "STYLE_MODEL"
    GLIGEN = "GLIGEN"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    AUDIO = "AUDIO"
    WEBCAM = "WEBCAM"
    POINT = "POINT"
    FACE_ANALYSIS = "FACE_ANALYSIS"
    BBOX = "BBOX"
    SEGS = "SEGS"
    VIDEO = "VIDEO"
    ANY = "*"
    NUMBER = "FLOAT,INT"
    PRIMITIVE = "STRING,FLOAT,INT,BOOLEAN"

    def __ne__(self, value: object) -> bool:
        # ComfyUI's rule, used when a link's types are compared: "*" matches every type, and "A,B" matches a
        # type whose names are a subset or a superset of its own. Only `!=` is overridden, as in ComfyUI:
        # `==` stays plain string equality, so `IO.ANY == "INT"` is False and a literal on an any-typed input
        # is not converted like an INT.
        mine = str(self.value)
        other = str(value.value) if isinstance(value, Enum) else value
        if mine == "*" or other == "*":
            return False
        if not isinstance(other, str):
            return True
        a, b = frozenset(mine.split(",")), frozenset(other.split(","))
        return not (a <= b or b <= a)


class InputTypeOptions(TypedDict, total=False):
    default: Any
    defaultInput: bool
    forceInput: bool
    lazy: bool
    rawLink: bool
    tooltip: str
    min: float
    max: float
    step: float
    round: float
    display: Literal["number", "slider", "color"]
    control_after_generate: bool
    multiline: bool
    placeholder: str
    dynamicPrompts: bool
    image_upload: bool
    image_folder: Literal["input", "output", "temp"]
    label_on: str
    label_off: str


class InputTypeDict(TypedDict, total=False):
    required: dict[str, tuple[Any, InputTypeOptions] | tuple[Any]]
    optional: dict[str, tuple[Any, InputTypeOptions] | tuple[Any]]
    hidden: dict[str, Any]


class ComfyNodeABC(ABC):
    """Typing base for V1 nodes; subclasses declare INPUT_TYPES, RETURN_TYPES, FUNCTION as usual."""

    DESCRIPTION: ClassVar[str]
    CATEGORY: ClassVar[str]
    EXPERIMENTAL: ClassVar[bool]
    DEPRECATED: ClassVar[bool]
    RETURN_TYPES: ClassVar[tuple[Any, ...]]
    FUNCTION: ClassVar[str]


class CheckLazyMixin:
    """Default `check_lazy_status`: request every lazy input that is still None."""

    def check_lazy_status(self, **kwargs: Any) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]


class FileLocator(TypedDict):
    filename: str
    subfolder: str
    type: Literal["input", "output", "temp"]
