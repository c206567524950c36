"""ComfyUI's dynamic inputs: Autogrow groups and DynamicCombo options (``COMFY_AUTOGROW_V3``,
``COMFY_DYNAMICCOMBO_V3``).

A node declares one input whose spec is a template; a prompt then addresses its members with dotted names:

* Autogrow ``images: ("COMFY_AUTOGROW_V3", {"template": {"input": {"required": {"image": ("IMAGE", {})}},
  "prefix": "image", "min": 2, "max": 50}})`` (or ``"names": ["a", "b", ...]`` instead of prefix/max):
  the prompt gives ``images.image0``, ``images.image1``, ...; the first ``min`` are required when the
  template input is. The node receives ``images={"image0": ..., "image1": ...}`` (``{}`` when none given).
* DynamicCombo ``resize_type: ("COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "scale by", "inputs":
  {"required": {"multiplier": ("FLOAT", {...})}}}, ...]})``: the prompt gives ``resize_type`` (an option
  key) and the chosen option's inputs as ``resize_type.multiplier``. The node receives
  ``resize_type={"resize_type": "scale by", "multiplier": ...}``.

Templates nest (an option's inputs may hold another dynamic input); names are joined with dots at every
level. ``expand`` turns one node's declared inputs into the flat ``{name: spec}`` sections that validation
checks, given the names the prompt uses; ``fold`` turns the flat keyword values back into the nested dicts
the node function takes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AUTOGROW = "COMFY_AUTOGROW_V3"
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
DYNAMIC_TYPES = frozenset({AUTOGROW, DYNAMIC_COMBO})

Spec = tuple[Any, ...]
Sections = dict[str, dict[str, Any]]


def is_dynamic(spec: Any) -> bool:
    """Whether an input spec (``(type, options)``) is an Autogrow or DynamicCombo template."""
    return (isinstance(spec, (list, tuple)) and len(spec) > 0 and isinstance(spec[0], str)
            and str.__str__(spec[0]) in DYNAMIC_TYPES)


def has_dynamic(input_types: Mapping[str, Any]) -> bool:
    """Whether any required/optional input of a class is dynamic."""
    return any(is_dynamic(spec) for category in ("required", "optional")
               for spec in (input_types.get(category) or {}).values())


def _options(spec: Spec) -> Mapping[str, Any]:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}


def autogrow_names(spec: Spec) -> tuple[list[str], int]:
    """The member names an Autogrow spec allows, and how many of the first are required."""
    template: Mapping[str, Any] = _options(spec).get("template") or {}
    if "names" in template:
        names = [str(n) for n in template["names"]]
    else:
        prefix = str(template.get("prefix", ""))
        names = [f"{prefix}{i}" for i in range(int(template.get("max", 10)))]
    return names, int(template.get("min", 1))


def _autogrow_member(spec: Spec) -> tuple[Spec, bool]:
    template: Mapping[str, Any] = _options(spec).get("template") or {}
    inputs: Mapping[str, Any] = template.get("input") or {}
    for category in ("required", "optional"):
        section = inputs.get(category) or {}
        for member in section.values():
            return tuple(member), category == "required"
    raise ValueError("an Autogrow template declares no input")


def combo_keys(spec: Spec) -> list[str]:
    """The option keys of a DynamicCombo spec."""
    return [str(o["key"]) for o in _options(spec).get("options") or []]


def _combo_inputs(spec: Spec, key: Any) -> Mapping[str, Any] | None:
    for option in _options(spec).get("options") or []:
        if option.get("key") == key:
            return option.get("inputs") or {}
    return None


def expand(input_types: Mapping[str, Any], live: Mapping[str, Any], prefix: str = "") -> Sections:
    """Flatten one node's declared inputs for the names ``live`` (the prompt's inputs) uses.

    Static inputs are kept as they are; an Autogrow becomes its members (required up to ``min``, the rest
    optional); a DynamicCombo becomes a combo of its option keys plus the chosen option's inputs.
    """
    out: Sections = {"required": {}, "optional": {}}
    for category in ("required", "optional"):
        for name, spec in (input_types.get(category) or {}).items():
            full = f"{prefix}{name}"
            if not is_dynamic(spec):
                out[category][full] = spec
                continue
            kind = str.__str__(spec[0])
            if kind == AUTOGROW:
                member, member_required = _autogrow_member(spec)
                names, minimum = autogrow_names(spec)
                for i, member_name in enumerate(names):
                    required = category == "required" and member_required and i < minimum
                    out["required" if required else "optional"][f"{full}.{member_name}"] = member
            else:
                options = dict(_options(spec))
                out[category][full] = (combo_keys(spec), {k: v for k, v in options.items() if k != "options"})
                chosen = _combo_inputs(spec, live.get(full))
                if chosen is not None:
                    nested = expand(chosen, live, f"{full}.")
                    if category == "optional" and full not in live:
                        nested = {"required": {}, "optional": {**nested["required"], **nested["optional"]}}
                    for section in ("required", "optional"):
                        out[section].update(nested[section])
    return out


def dynamic_roots(input_types: Mapping[str, Any]) -> dict[str, str]:
    """``{input name: kind}`` of a class's top-level dynamic inputs."""
    return {name: str.__str__(spec[0]) for category in ("required", "optional")
            for name, spec in (input_types.get(category) or {}).items() if is_dynamic(spec)}


def accepts(roots: Mapping[str, str], name: str) -> bool:
    """Whether a dotted prompt input name belongs to one of the class's dynamic inputs."""
    return "." in name and name.split(".", 1)[0] in roots


def dynamic_paths(input_types: Mapping[str, Any], live: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{dotted path: kind}`` of every dynamic input ``live`` reaches (nested combos included)."""
    out: dict[str, str] = {}
    for category in ("required", "optional"):
        for name, spec in (input_types.get(category) or {}).items():
            if not is_dynamic(spec):
                continue
            full = f"{prefix}{name}"
            kind = str.__str__(spec[0])
            out[full] = kind
            if kind == DYNAMIC_COMBO:
                chosen = _combo_inputs(spec, live.get(full))
                if chosen is not None:
                    out.update(dynamic_paths(chosen, live, f"{full}."))
    return out


def fold(kwargs: Mapping[str, Any], paths: Mapping[str, str]) -> dict[str, Any]:
    """Nest the dotted keyword values of dynamic inputs into the dicts the node function takes.

    An Autogrow becomes ``{member: value}`` (``{}`` with none given); a DynamicCombo becomes
    ``{own name: chosen key, input: value, ...}``; the deepest paths fold first.
    """
    out = dict(kwargs)
    for path in sorted(paths, key=lambda p: p.count("."), reverse=True):
        kind = paths[path]
        own = path.rsplit(".", 1)[-1]
        children = {name[len(path) + 1:]: name for name in out
                    if name.startswith(path + ".") and "." not in name[len(path) + 1:]}
        if kind == AUTOGROW:
            value: dict[str, Any] = {}
        elif path in out:
            value = {own: out[path]}
        else:
            continue
        for short, name in children.items():
            value[short] = out.pop(name)
        out[path] = value
    return out
