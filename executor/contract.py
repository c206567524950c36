"""The V1 node class contract: reading a class's declarations and checking them at registration."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from executor.dynamic_inputs import accepts, dynamic_roots
from executor.errors import RegistrationError

log = logging.getLogger(__name__)

INPUT_CATEGORIES = ("required", "optional", "hidden")
HIDDEN_VALUES = frozenset(
    {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "DYNPROMPT", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}
)
NUMERIC_TYPES = ("INT", "FLOAT")


def call_input_types(cls: type) -> dict[str, Any]:
    """Call ``cls.INPUT_TYPES()`` and return its dict (raises whatever it raises)."""
    result = cls.INPUT_TYPES()  # type: ignore[attr-defined]
    if not isinstance(result, Mapping):
        raise TypeError(f"INPUT_TYPES() returned {type(result).__name__}, expected a dict")
    return dict(result)


def declared_inputs(input_types: Mapping[str, Any]) -> dict[str, tuple[Any, dict[str, Any], str]]:
    """Return ``{name: (type, options, category)}`` for required + optional inputs, in order."""
    out: dict[str, tuple[Any, dict[str, Any], str]] = {}
    for category in ("required", "optional"):
        for name, spec in (input_types.get(category) or {}).items():
            type_ = spec[0]
            options = spec[1] if len(spec) > 1 and (type(spec[1]) is dict or isinstance(spec[1], Mapping)) else {}
            out[name] = (type_, options if type(options) is dict else dict(options), category)
    return out


def hidden_inputs(input_types: Mapping[str, Any]) -> dict[str, str]:
    """Return ``{name: HIDDEN_KIND}`` (V1 plain strings; V3-style ``[KIND]`` accepted)."""
    out: dict[str, str] = {}
    for name, spec in (input_types.get("hidden") or {}).items():
        kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
        out[name] = str(kind)
    return out


def accepted_kwargs(func: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return the subset of ``kwargs`` that ``func`` accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params}
    return {k: v for k, v in kwargs.items() if k in names}


def return_types(cls: type) -> tuple[Any, ...]:
    """Return ``RETURN_TYPES`` as a tuple."""
    return tuple(getattr(cls, "RETURN_TYPES", ()))


def output_is_list(cls: type) -> tuple[bool, ...]:
    """Return ``OUTPUT_IS_LIST`` or all-False of the same length as ``RETURN_TYPES``."""
    declared = getattr(cls, "OUTPUT_IS_LIST", None)
    n = len(return_types(cls))
    return tuple(bool(x) for x in declared) if declared is not None else (False,) * n


def is_display_only(cls: type) -> bool:
    """A node without outputs that is not an output node: no prompt ever runs it, so it needs no FUNCTION."""
    return not getattr(cls, "RETURN_TYPES", ()) and not is_output_node(cls)


def is_output_node(cls: type) -> bool:
    """Return whether the class is an output node (``OUTPUT_NODE is True``)."""
    return getattr(cls, "OUTPUT_NODE", False) is True


def _fail(name: str, problem: str) -> RegistrationError:
    return RegistrationError(f"Cannot register node {name!r}: {problem}", node_id=name)


class _Lenient:
    """Where a problem ComfyUI lets pass goes: refused (``warnings`` None: built-ins, direct registration) or
    appended to ``warnings`` and logged (custom node packs: the node registers, as in ComfyUI; validation still
    checks the values a prompt sends)."""

    def __init__(self, name: str, warnings: list[str] | None) -> None:
        self.name, self.warnings = name, warnings

    def __call__(self, problem: str) -> None:
        if self.warnings is None:
            raise _fail(self.name, problem)
        message = f"node {self.name!r}: {problem} (ComfyUI accepts this; Loom registers the node)"
        log.warning("%s", message)
        self.warnings.append(message)


def _check_input(name: str, category: str, input_name: str, spec: Any, lenient: _Lenient) -> None:
    where = f"INPUT_TYPES()[{category!r}][{input_name!r}]"
    if category == "hidden":
        # ComfyUI fills the hidden kinds it knows and ignores any other entry (packs keep data there, e.g.
        # rgthree's `(['CHOOSE'],)`), so nothing about a hidden entry is refused.
        return
    if not isinstance(spec, (list, tuple)) or not spec:
        raise _fail(name, f"{where} must be a tuple (TYPE,) or (TYPE, {{options}}), got {spec!r}")
    if len(spec) > 2:
        lenient(f"{where} has {len(spec)} entries; ComfyUI reads (TYPE, {{options}}) and ignores the rest")
    type_ = spec[0]
    if not isinstance(type_, (str, list, tuple)):
        raise _fail(name, f"{where} type must be a type string or a list of options, got {type_!r}")
    if isinstance(type_, str) and not type_:
        raise _fail(name, f"{where} type is an empty string; declare a type such as 'INT' or 'IMAGE'")
    if len(spec) == 1:
        return
    options = spec[1]
    if not isinstance(options, Mapping):
        raise _fail(name, f"{where} options must be a dict, got {type(options).__name__}")
    _check_options(name, where, type_, options, lenient)


def _check_options(name: str, where: str, type_: Any, options: Mapping[str, Any], lenient: _Lenient) -> None:
    lo, hi, default = options.get("min"), options.get("max"), options.get("default")
    if lo is not None and hi is not None and _is_number(lo) and _is_number(hi) and lo > hi:
        lenient(f"{where} has min {lo} > max {hi}; swap them")
    if default is not None and type_ in NUMERIC_TYPES:
        if not _is_number(default):
            lenient(f"{where} default {default!r} is not a number for a {type_} input")
        elif lo is not None and _is_number(lo) and default < lo:
            lenient(f"{where} default {default} is below min {lo}; raise the default or lower min")
        elif hi is not None and _is_number(hi) and default > hi:
            lenient(f"{where} default {default} is above max {hi}; lower the default or raise max")
    if isinstance(type_, (list, tuple)) and default is not None and type_ and default not in type_:
        lenient(f"{where} default {default!r} is not one of the options {list(type_)[:10]!r}")
    if type_ == "COMBO" and "options" in options and not isinstance(options["options"], (list, tuple)):
        raise _fail(name, f"{where} 'options' must be a list of choices")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_node_class(name: str, cls: Any, warnings: list[str] | None = None) -> None:
    """Check that ``cls`` honours the V1 contract; raise ``RegistrationError`` that teaches the fix. With a
    ``warnings`` list, inconsistencies ComfyUI lets pass (a default outside min / max or the options, extra
    entries in an input tuple) are appended there instead of refused."""
    lenient = _Lenient(name, warnings)
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"Node ids must be non-empty strings, got {name!r}")
    if not inspect.isclass(cls):
        raise _fail(name, f"expected a class, got {type(cls).__name__}; map the id to the class itself")
    if not callable(getattr(cls, "INPUT_TYPES", None)):
        raise _fail(name, "the class has no INPUT_TYPES classmethod; add "
                          "`@classmethod def INPUT_TYPES(cls): return {'required': {...}}`")
    try:
        types = call_input_types(cls)
    except Exception as ex:  # a broken INPUT_TYPES is the class author's problem to learn about
        raise _fail(name, f"INPUT_TYPES() raised {type(ex).__name__}: {ex}") from ex
    for category, entries in types.items():
        if category not in INPUT_CATEGORIES:
            raise _fail(name, f"INPUT_TYPES() has unknown section {category!r}; use 'required', "
                              "'optional' or 'hidden'")
        if not isinstance(entries, Mapping):
            raise _fail(name, f"INPUT_TYPES()[{category!r}] must be a dict of inputs")
        for input_name, spec in entries.items():
            _check_input(name, category, str(input_name), spec, lenient)
    _check_outputs(name, cls)
    function = getattr(cls, "FUNCTION", None)
    # a display-only node needs none: nothing ever runs it (ComfyUI registers such text boxes too)
    if function is not None or not is_display_only(cls):
        if not isinstance(function, str) or not function:
            raise _fail(name, "FUNCTION must name the method to call, e.g. FUNCTION = 'run'")
        if not callable(getattr(cls, function, None)):
            raise _fail(name, f"FUNCTION is {function!r} but the class has no method of that name")
    for attr, kind in (("CATEGORY", str), ("DESCRIPTION", str)):
        if hasattr(cls, attr) and not isinstance(getattr(cls, attr), kind):
            raise _fail(name, f"{attr} must be a string, got {getattr(cls, attr)!r}")
    # INPUT_IS_LIST is read for its truth value, as ComfyUI does (packs write `INPUT_IS_LIST = (True,)`)
    for attr in ("OUTPUT_NODE", "NOT_IDEMPOTENT", "DEPRECATED", "EXPERIMENTAL"):
        if hasattr(cls, attr) and not isinstance(getattr(cls, attr), bool):
            raise _fail(name, f"{attr} must be True or False, got {getattr(cls, attr)!r}")


def _check_outputs(name: str, cls: type) -> None:
    if not hasattr(cls, "RETURN_TYPES"):
        raise _fail(name, "the class has no RETURN_TYPES; declare a tuple of output types "
                          "(use RETURN_TYPES = () for a node without outputs)")
    rt = cls.RETURN_TYPES
    if isinstance(rt, str) or not isinstance(rt, (list, tuple)):
        raise _fail(name, f"RETURN_TYPES must be a tuple of type strings, got {rt!r} "
                          "(a single output needs a trailing comma: ('IMAGE',))")
    for t in rt:
        if not isinstance(t, (str, list, tuple)):
            raise _fail(name, f"RETURN_TYPES entry {t!r} is not a type string")
    for attr in ("RETURN_NAMES", "OUTPUT_IS_LIST", "OUTPUT_TOOLTIPS"):
        value = getattr(cls, attr, None)
        if value is None:
            continue
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise _fail(name, f"{attr} must be a tuple, got {value!r}")
        if len(value) != len(rt):
            raise _fail(name, f"{attr} has {len(value)} entries but RETURN_TYPES has {len(rt)}; "
                              "give one entry per output")


class ClassInfo:
    """What the executor needs from a node class, read once per prompt (INPUT_TYPES stays live per prompt)."""

    __slots__ = ("cls", "input_types", "declared", "hidden", "lazy", "raw_links", "output_is_list", "n_outputs",
                 "is_output", "input_is_list", "has_is_changed", "keyed_by_id", "function", "open_sections",
                 "is_async", "dynamic")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.input_types = call_input_types(cls)
        self.declared = declared_inputs(self.input_types)
        self.dynamic = dynamic_roots(self.input_types)  # Autogrow / DynamicCombo inputs: dotted prompt names
        self.hidden = hidden_inputs(self.input_types)
        self.lazy = frozenset(n for n, (_, opts, _) in self.declared.items() if opts.get("lazy"))
        self.raw_links = frozenset(n for n, (_, opts, _) in self.declared.items() if opts.get("rawLink"))
        self.output_is_list = output_is_list(cls)
        self.n_outputs = len(return_types(cls))
        self.is_output = is_output_node(cls)
        self.input_is_list = bool(getattr(cls, "INPUT_IS_LIST", False))
        self.has_is_changed = hasattr(cls, "IS_CHANGED")
        self.keyed_by_id = bool(getattr(cls, "NOT_IDEMPOTENT", False)) or "UNIQUE_ID" in self.hidden.values()
        self.function = str(getattr(cls, "FUNCTION", ""))
        self.is_async = inspect.iscoroutinefunction(getattr(cls, self.function, None))
        # packs declare "any input name" with a dict subclass whose __contains__ says yes to everything; ComfyUI
        # passes a prompt input found in any section, hidden included (VideoHelperSuite's format widgets)
        self.open_sections = tuple(section for section in (self.input_types.get("required"),
                                                           self.input_types.get("optional"),
                                                           self.input_types.get("hidden"))
                                   if section is not None and type(section) is not dict)

    def declares(self, name: str) -> bool:
        """Whether ``name`` is a declared (required or optional) input of the class."""
        return (name in self.declared or any(name in section for section in self.open_sections)
                or (bool(self.dynamic) and accepts(self.dynamic, name)))
