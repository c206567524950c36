"""Text operations behind the string utility nodes, with ComfyUI's results (comfy_extras string nodes).

Plain functions over `str`; no torch. The regex helpers compile with Python's `re` and share one flag rule.
"""
from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["CASE_MODES", "TRIM_MODES", "COMPARE_MODES", "EXTRACT_MODES", "concatenate", "substring",
           "convert_case", "trim", "contains", "compare", "regex_flags", "regex_match", "regex_extract",
           "regex_replace", "preview_text"]

CASE_MODES = ("UPPERCASE", "lowercase", "Capitalize", "Title Case")
TRIM_MODES = ("Both", "Left", "Right")
COMPARE_MODES = ("Starts With", "Ends With", "Equal")
EXTRACT_MODES = ("First Match", "All Matches", "First Group", "All Groups")


def concatenate(string_a: str, string_b: str, delimiter: str) -> str:
    """`string_a + delimiter + string_b`."""
    return delimiter.join((string_a, string_b))


def substring(string: str, start: int, end: int) -> str:
    """Python slice `string[start:end]` (negative indices count from the end)."""
    return string[start:end]


def convert_case(string: str, mode: str) -> str:
    """str.upper / lower / capitalize / title by mode; an unknown mode returns the string unchanged."""
    ops = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize, "Title Case": str.title}
    op = ops.get(mode)
    return op(string) if op is not None else string


def trim(string: str, mode: str) -> str:
    """Strip whitespace on both sides, the left or the right."""
    ops = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}
    op = ops.get(mode)
    return op(string) if op is not None else string


def contains(string: str, substring_: str, case_sensitive: bool) -> bool:
    """Whether `substring_` occurs in `string` (both lower-cased when not case sensitive)."""
    if not case_sensitive:
        return substring_.lower() in string.lower()
    return substring_ in string


def compare(string_a: str, string_b: str, mode: str, case_sensitive: bool) -> bool:
    """`a.startswith(b)`, `a.endswith(b)` or `a == b`."""
    a, b = (string_a, string_b) if case_sensitive else (string_a.lower(), string_b.lower())
    if mode == "Starts With":
        return a.startswith(b)
    if mode == "Ends With":
        return a.endswith(b)
    if mode == "Equal":
        return a == b
    raise ValueError(f"mode {mode!r} is not one of {list(COMPARE_MODES)}")


def regex_flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    """`re` flags from the three switches the regex nodes share."""
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


def regex_match(string: str, pattern: str, flags: int) -> bool:
    """Whether `re.search` finds the pattern; an invalid pattern counts as no match (as in ComfyUI)."""
    try:
        return re.search(pattern, string, flags) is not None
    except re.error:
        return False


def regex_extract(string: str, pattern: str, mode: str, flags: int, group_index: int) -> str:
    """The first match, all matches, the first match's group or every match's group, newline-joined.

    "All Matches" with groups in the pattern takes each match's first group. A missing group or an invalid
    pattern gives "" (ComfyUI's behaviour, so a template keeps running).
    """
    try:
        if mode == "First Match":
            match = re.search(pattern, string, flags)
            return match.group(0) if match else ""
        if mode == "All Matches":
            found = re.findall(pattern, string, flags)
            return "\n".join(m[0] if isinstance(m, tuple) else m for m in found)
        if mode == "First Group":
            match = re.search(pattern, string, flags)
            if match and len(match.groups()) >= group_index:
                return match.group(group_index) or ""
            return ""
        if mode == "All Groups":
            picked = [m.group(group_index) or "" for m in re.finditer(pattern, string, flags)
                      if m.groups() and len(m.groups()) >= group_index]
            return "\n".join(picked)
    except re.error:
        return ""
    return ""


def regex_replace(string: str, pattern: str, replace: str, flags: int, count: int) -> str:
    """`re.sub` with at most `count` replacements (0 = all); an invalid pattern raises `re.error`."""
    return re.sub(pattern, replace, string, count=count, flags=flags)


def preview_text(source: Any) -> str:
    """PreviewAny's text: strings as they are, numbers and booleans via str(), else JSON, else str()."""
    if isinstance(source, str):
        return source
    if isinstance(source, (int, float, bool)):
        return str(source)
    if source is None:
        return "None"
    try:
        return json.dumps(source)
    except (TypeError, ValueError):
        try:
            return str(source)
        except Exception:  # noqa: BLE001 - an object whose __str__ fails still gets a preview
            return "source exists, but could not be serialized."
