"""String utility nodes (ComfyUI `utils/string`) and PreviewAny, as thin adapters over `engine.strings`."""
from __future__ import annotations

import re
from typing import Any

from engine import strings
from nodes._base import BuiltinNode, InputTypes, input_error

__all__ = ["StringConcatenate", "StringSubstring", "StringLength", "CaseConverter", "StringTrim", "StringReplace",
           "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace", "PreviewAny"]

_TEXT = ("STRING", {"multiline": True})
_REGEX_SWITCHES = {
    "case_insensitive": ("BOOLEAN", {"default": True}),
    "multiline": ("BOOLEAN", {"default": False}),
    "dotall": ("BOOLEAN", {"default": False}),
}


class _StringNode(BuiltinNode):
    CATEGORY = "utils/string"
    RETURN_TYPES: tuple[str, ...] = ("STRING",)
    FUNCTION = "execute"


class StringConcatenate(_StringNode):
    """string_a + delimiter + string_b."""

    DISPLAY_NAME = "Concatenate"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string_a": _TEXT, "string_b": _TEXT,
                             "delimiter": ("STRING", {"multiline": False, "default": ""})}}

    def execute(self, string_a: str, string_b: str, delimiter: str) -> tuple[str]:
        return (strings.concatenate(string_a, string_b, delimiter),)


class StringSubstring(_StringNode):
    """string[start:end] (Python slicing)."""

    DISPLAY_NAME = "Substring"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "start": ("INT", {}), "end": ("INT", {})}}

    def execute(self, string: str, start: int, end: int) -> tuple[str]:
        return (strings.substring(string, start, end),)


class StringLength(_StringNode):
    """Number of characters."""

    DISPLAY_NAME = "Length"
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("length",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT}}

    def execute(self, string: str) -> tuple[int]:
        return (len(string),)


class CaseConverter(_StringNode):
    """UPPERCASE, lowercase, Capitalize (first letter) or Title Case."""

    DISPLAY_NAME = "Case Converter"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "mode": (list(strings.CASE_MODES),)}}

    def execute(self, string: str, mode: str) -> tuple[str]:
        return (strings.convert_case(string, mode),)


class StringTrim(_StringNode):
    """Strip whitespace on both sides, the left or the right."""

    DISPLAY_NAME = "Trim"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "mode": (list(strings.TRIM_MODES),)}}

    def execute(self, string: str, mode: str) -> tuple[str]:
        return (strings.trim(string, mode),)


class StringReplace(_StringNode):
    """Replace every occurrence of `find` with `replace` (plain text)."""

    DISPLAY_NAME = "Replace"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "find": _TEXT, "replace": _TEXT}}

    def execute(self, string: str, find: str, replace: str) -> tuple[str]:
        return (string.replace(find, replace),)


class StringContains(_StringNode):
    """Whether `substring` occurs in `string`."""

    DISPLAY_NAME = "Contains"
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("contains",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "substring": _TEXT,
                             "case_sensitive": ("BOOLEAN", {"default": True})}}

    def execute(self, string: str, substring: str, case_sensitive: bool) -> tuple[bool]:
        return (strings.contains(string, substring, case_sensitive),)


class StringCompare(_StringNode):
    """Starts With / Ends With / Equal."""

    DISPLAY_NAME = "Compare"
    RETURN_TYPES = ("BOOLEAN",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string_a": _TEXT, "string_b": _TEXT, "mode": (list(strings.COMPARE_MODES),),
                             "case_sensitive": ("BOOLEAN", {"default": True})}}

    def execute(self, string_a: str, string_b: str, mode: str, case_sensitive: bool) -> tuple[bool]:
        try:
            return (strings.compare(string_a, string_b, mode, case_sensitive),)
        except ValueError as exc:
            raise input_error("StringCompare", "mode", str(exc)) from exc


class RegexMatch(_StringNode):
    """Whether the pattern is found anywhere (an invalid pattern gives false)."""

    DISPLAY_NAME = "Regex Match"
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "regex_pattern": _TEXT, **_REGEX_SWITCHES}}

    def execute(self, string: str, regex_pattern: str, case_insensitive: bool, multiline: bool,
                dotall: bool) -> tuple[bool]:
        flags = strings.regex_flags(case_insensitive, multiline, dotall)
        return (strings.regex_match(string, regex_pattern, flags),)


class RegexExtract(_StringNode):
    """First match, all matches, a group of the first match or of every match (newline-joined)."""

    DISPLAY_NAME = "Regex Extract"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"string": _TEXT, "regex_pattern": _TEXT, "mode": (list(strings.EXTRACT_MODES),),
                             **_REGEX_SWITCHES,
                             "group_index": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def execute(self, string: str, regex_pattern: str, mode: str, case_insensitive: bool, multiline: bool,
                dotall: bool, group_index: int) -> tuple[str]:
        flags = strings.regex_flags(case_insensitive, multiline, dotall)
        return (strings.regex_extract(string, regex_pattern, mode, flags, group_index),)


class RegexReplace(_StringNode):
    """re.sub with up to `count` replacements (0 = all)."""

    DISPLAY_NAME = "Regex Replace"
    DESCRIPTION = "Find and replace text using regex patterns."

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {"string": _TEXT, "regex_pattern": _TEXT, "replace": _TEXT},
            "optional": {
                **_REGEX_SWITCHES,
                "dotall": ("BOOLEAN", {"default": False, "tooltip": (
                    "When enabled, the dot (.) character will match any character including newline characters. "
                    "When disabled, dots won't match newlines.")}),
                "count": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip": (
                    "Maximum number of replacements to make. Set to 0 to replace all occurrences (default). "
                    "Set to 1 to replace only the first match, 2 for the first two matches, etc.")}),
            },
        }

    def execute(self, string: str, regex_pattern: str, replace: str, case_insensitive: bool = True,
                multiline: bool = False, dotall: bool = False, count: int = 0) -> tuple[str]:
        flags = strings.regex_flags(case_insensitive, multiline, dotall)
        try:
            return (strings.regex_replace(string, regex_pattern, replace, flags, count),)
        except re.error as exc:
            raise input_error("RegexReplace", "regex_pattern",
                              f"{regex_pattern!r} is not a valid regular expression ({exc})") from exc


class PreviewAny(BuiltinNode):
    """Show any value as text in the editor (`ui.text`): strings as is, numbers via str(), other values as JSON.

    ComfyUI 0.3.64's node has no output; later versions also return the text as a STRING, and current workflow
    templates link it (70 of them), so Loom serves the output too. The text is 0.3.64's (compact JSON).
    """

    DISPLAY_NAME = "Preview Any"
    CATEGORY = "utils"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "main"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"source": ("*", {})}}

    def main(self, source: Any = None) -> dict[str, Any]:
        text = strings.preview_text(source)
        return {"ui": {"text": (text,)}, "result": (text,)}


NODES = [StringConcatenate, StringSubstring, StringLength, CaseConverter, StringTrim, StringReplace, StringContains,
         StringCompare, RegexMatch, RegexExtract, RegexReplace, PreviewAny]
