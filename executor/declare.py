"""A typed, declarative way to write nodes that produces the plain V1 contract (optional sugar).

Example::

    from executor.declare import Int, Socket, node

    @node("AddOffset", category="math", outputs=[("INT", "sum")], display_name="Add Offset")
    class AddOffset:
        value = Int(default=0, min=-100, max=100, tooltip="the number")
        offset = Int(default=1)
        mask = Socket("MASK", optional=True)

        def run(self, value: int, offset: int, mask=None) -> tuple[int]:
            return (value + offset,)

    registry.register(AddOffset.NODE_ID, AddOffset, display_name=AddOffset.DISPLAY_NAME)

The decorator writes ``INPUT_TYPES`` (inputs in declaration order), ``RETURN_TYPES``, ``RETURN_NAMES``,
``FUNCTION``, ``CATEGORY``, ``DESCRIPTION``, ``OUTPUT_NODE``, ... so the class is an ordinary V1 node:
/object_info, validation and execution see no difference.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from executor.errors import RegistrationError

T = TypeVar("T", bound=type)


class Input:
    """One declared input: a type (string or COMBO option list) and its options."""

    def __init__(self, type_: Any, *, optional: bool = False, **options: Any) -> None:
        self.type = type_
        self.optional = optional
        self.options = {k: v for k, v in options.items() if v is not None}


def Int(*, default: int | None = None, min: int | None = None, max: int | None = None, step: int | None = None,
        optional: bool = False, **options: Any) -> Input:
    """An ``INT`` widget input."""
    return Input("INT", optional=optional, default=default, min=min, max=max, step=step, **options)


def Float(*, default: float | None = None, min: float | None = None, max: float | None = None,
          step: float | None = None, round: float | None = None, optional: bool = False, **options: Any) -> Input:
    """A ``FLOAT`` widget input."""
    return Input("FLOAT", optional=optional, default=default, min=min, max=max, step=step, round=round, **options)


def String(*, default: str | None = None, multiline: bool | None = None, optional: bool = False,
           **options: Any) -> Input:
    """A ``STRING`` widget input."""
    return Input("STRING", optional=optional, default=default, multiline=multiline, **options)


def Boolean(*, default: bool | None = None, optional: bool = False, **options: Any) -> Input:
    """A ``BOOLEAN`` widget input."""
    return Input("BOOLEAN", optional=optional, default=default, **options)


def Combo(choices: Sequence[str] | Callable[[], Sequence[str]], *, default: str | None = None,
          optional: bool = False, **options: Any) -> Input:
    """A COMBO input (legacy form: the option list is the type); ``choices`` may be a callable (live list)."""
    return Input(choices, optional=optional, default=default, **options)


def Socket(type_: str, *, optional: bool = False, **options: Any) -> Input:
    """A link-only input of a socket type such as ``"MODEL"`` or ``"IMAGE"``."""
    return Input(type_, optional=optional, **options)


class Hidden:
    """A hidden input (``"PROMPT"``, ``"EXTRA_PNGINFO"``, ``"UNIQUE_ID"``, ``"DYNPROMPT"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


def _input_types(fields: dict[str, Input | Hidden]) -> Callable[[type], dict[str, Any]]:
    def input_types(cls: type) -> dict[str, Any]:
        out: dict[str, Any] = {"required": {}}
        for name, field in fields.items():
            if isinstance(field, Hidden):
                out.setdefault("hidden", {})[name] = field.kind
                continue
            type_ = field.type() if callable(field.type) else field.type
            if not isinstance(type_, str):
                type_ = list(type_)
            spec = (type_, dict(field.options)) if field.options else (type_,)
            out.setdefault("optional" if field.optional else "required", {})[name] = spec
        return out

    return input_types


def node(node_id: str, *, outputs: Sequence[str | tuple[str, str]] = (), category: str = "sd",
         display_name: str | None = None, description: str = "", output_node: bool = False,
         function: str = "run", output_is_list: Sequence[bool] | None = None, not_idempotent: bool = False,
         input_is_list: bool = False) -> Callable[[T], T]:
    """Class decorator: turn ``Input`` / ``Hidden`` class attributes into a V1 node class."""

    def wrap(cls: T) -> T:
        fields = {name: value for name, value in vars(cls).items() if isinstance(value, (Input, Hidden))}
        if not callable(getattr(cls, function, None)):
            raise RegistrationError(f"@node({node_id!r}): class {cls.__name__} has no method {function!r}; "
                                    f"define `def {function}(self, ...)` or pass function=...", node_id=node_id)
        for name in fields:
            delattr(cls, name)
        types = tuple(o if isinstance(o, str) else o[0] for o in outputs)
        names = tuple(o if isinstance(o, str) else o[1] for o in outputs)
        attrs: dict[str, Any] = {
            "NODE_ID": node_id, "DISPLAY_NAME": display_name or node_id, "RETURN_TYPES": types,
            "RETURN_NAMES": names, "FUNCTION": function, "CATEGORY": category, "DESCRIPTION": description,
            "OUTPUT_NODE": output_node, "INPUT_TYPES": classmethod(_input_types(fields)),
        }
        if output_is_list is not None:
            attrs["OUTPUT_IS_LIST"] = tuple(output_is_list)
        if not_idempotent:
            attrs["NOT_IDEMPOTENT"] = True
        if input_is_list:
            attrs["INPUT_IS_LIST"] = True
        for key, value in attrs.items():
            setattr(cls, key, value)
        return cls

    return wrap
