"""String utility nodes and PreviewAny: specs as ComfyUI 0.3.64 serves them, results checked by hand."""
from __future__ import annotations

from typing import Any

import pytest


def _run(registry: Any, name: str, **inputs: Any) -> Any:
    cls = registry.get(name)
    out = getattr(cls(), cls.FUNCTION)(**inputs)
    return out


def test_specs(registry: Any) -> None:
    info = registry.object_info()
    names = ["StringConcatenate", "StringSubstring", "StringLength", "CaseConverter", "StringTrim", "StringReplace",
             "StringContains", "StringCompare", "RegexMatch", "RegexExtract", "RegexReplace"]
    assert {info[n]["category"] for n in names} == {"utils/string"}
    assert [info[n]["display_name"] for n in names] == [
        "Concatenate", "Substring", "Length", "Case Converter", "Trim", "Replace", "Contains", "Compare",
        "Regex Match", "Regex Extract", "Regex Replace"]
    concat = info["StringConcatenate"]["input"]["required"]
    assert concat["delimiter"] == ["STRING", {"multiline": False, "default": ""}]
    assert concat["string_a"] == ["STRING", {"multiline": True}]
    assert info["StringLength"]["output"] == ["INT"] and info["StringLength"]["output_name"] == ["length"]
    assert info["StringContains"]["output_name"] == ["contains"]
    assert info["RegexMatch"]["output_name"] == ["matches"]
    assert info["CaseConverter"]["input"]["required"]["mode"][0] == ["UPPERCASE", "lowercase", "Capitalize",
                                                                     "Title Case"]
    assert info["StringTrim"]["input"]["required"]["mode"][0] == ["Both", "Left", "Right"]
    assert info["StringCompare"]["input"]["required"]["mode"][0] == ["Starts With", "Ends With", "Equal"]
    ext = info["RegexExtract"]["input"]
    assert ext["required"]["mode"][0] == ["First Match", "All Matches", "First Group", "All Groups"]
    assert ext["required"]["group_index"][1] == {"default": 1, "min": 0, "max": 100}
    assert info["RegexExtract"]["input_order"]["required"] == [
        "string", "regex_pattern", "mode", "case_insensitive", "multiline", "dotall", "group_index"]
    rep = info["RegexReplace"]["input"]
    assert list(rep["required"]) == ["string", "regex_pattern", "replace"]
    assert list(rep["optional"]) == ["case_insensitive", "multiline", "dotall", "count"]
    assert rep["optional"]["count"][1]["default"] == 0
    pa = info["PreviewAny"]
    assert pa["input"]["required"]["source"][0] == "*" and pa["output_node"] is True
    assert pa["category"] == "utils" and pa["display_name"] == "Preview Any" and pa["output"] == ["STRING"]


@pytest.mark.parametrize(("name", "inputs", "expected"), [
    ("StringConcatenate", {"string_a": "ab", "string_b": "cd", "delimiter": "--"}, "ab--cd"),
    ("StringConcatenate", {"string_a": "ab", "string_b": "", "delimiter": ""}, "ab"),
    ("StringSubstring", {"string": "abcdefgh", "start": 2, "end": 5}, "cde"),
    ("StringSubstring", {"string": "abcdefgh", "start": -3, "end": 100}, "fgh"),
    ("StringLength", {"string": "héllo\n"}, 6),
    ("CaseConverter", {"string": "hELLO wORLD", "mode": "UPPERCASE"}, "HELLO WORLD"),
    ("CaseConverter", {"string": "hELLO wORLD", "mode": "lowercase"}, "hello world"),
    ("CaseConverter", {"string": "hELLO wORLD", "mode": "Capitalize"}, "Hello world"),
    ("CaseConverter", {"string": "hELLO wORLD's", "mode": "Title Case"}, "Hello World'S"),
    ("StringTrim", {"string": " \t x y \n", "mode": "Both"}, "x y"),
    ("StringTrim", {"string": " \t x y \n", "mode": "Left"}, "x y \n"),
    ("StringTrim", {"string": " \t x y \n", "mode": "Right"}, " \t x y"),
    ("StringReplace", {"string": "a.b.c", "find": ".", "replace": "::"}, "a::b::c"),
    ("StringContains", {"string": "Hello", "substring": "ELL", "case_sensitive": True}, False),
    ("StringContains", {"string": "Hello", "substring": "ELL", "case_sensitive": False}, True),
    ("StringCompare", {"string_a": "Hello", "string_b": "he", "mode": "Starts With", "case_sensitive": False},
     True),
    ("StringCompare", {"string_a": "Hello", "string_b": "he", "mode": "Starts With", "case_sensitive": True},
     False),
    ("StringCompare", {"string_a": "Hello", "string_b": "LO", "mode": "Ends With", "case_sensitive": False}, True),
    ("StringCompare", {"string_a": "a", "string_b": "a", "mode": "Equal", "case_sensitive": True}, True),
])
def test_plain_string_nodes(registry: Any, name: str, inputs: dict[str, Any], expected: Any) -> None:
    assert _run(registry, name, **inputs) == (expected,)


_FLAGS = {"case_insensitive": True, "multiline": False, "dotall": False}


def test_regex_match(registry: Any) -> None:
    assert _run(registry, "RegexMatch", string="Cat 12", regex_pattern=r"cat \d+", **_FLAGS) == (True,)
    flags = dict(_FLAGS, case_insensitive=False)
    assert _run(registry, "RegexMatch", string="Cat 12", regex_pattern=r"cat \d+", **flags) == (False,)
    assert _run(registry, "RegexMatch", string="a\nb", regex_pattern="a.b", **_FLAGS) == (False,)
    assert _run(registry, "RegexMatch", string="a\nb", regex_pattern="a.b", **dict(_FLAGS, dotall=True)) == (True,)
    assert _run(registry, "RegexMatch", string="x\nyz", regex_pattern="^y", **dict(_FLAGS, multiline=True)) == (True,)
    assert _run(registry, "RegexMatch", string="abc", regex_pattern="(", **_FLAGS) == (False,)  # invalid: no match


def test_regex_extract_modes(registry: Any) -> None:
    text = "w=3 h=40 d=5"
    def ext(mode: str, pattern: str, group: int = 1) -> str:
        out = _run(registry, "RegexExtract", string=text, regex_pattern=pattern, mode=mode, group_index=group,
                   **_FLAGS)
        assert isinstance(out[0], str)
        return str(out[0])

    assert ext("First Match", r"\w=\d+") == "w=3"
    assert ext("All Matches", r"\w=\d+") == "w=3\nh=40\nd=5"
    assert ext("All Matches", r"(\w)=(\d+)") == "w\nh\nd"  # with groups: each match's first group
    assert ext("First Group", r"(\w)=(\d+)", 2) == "3"
    assert ext("First Group", r"(\w)=(\d+)", 3) == ""  # group index past the groups
    assert ext("All Groups", r"(\w)=(\d+)", 2) == "3\n40\n5"
    assert ext("All Groups", r"(\w)=(\d+)", 0) == "w=3\nh=40\nd=5"
    assert ext("First Match", r"zz") == "" and ext("First Match", "[") == ""


def test_regex_replace(registry: Any) -> None:
    from nodes._base import NodeInputError

    assert _run(registry, "RegexReplace", string="a1b22c333", regex_pattern=r"\d+", replace="#") == ("a#b#c#",)
    assert _run(registry, "RegexReplace", string="a1b22c333", regex_pattern=r"\d+", replace="#",
                count=2) == ("a#b#c333",)
    assert _run(registry, "RegexReplace", string="Ab ab", regex_pattern="ab", replace="x",
                case_insensitive=False) == ("Ab x",)
    assert _run(registry, "RegexReplace", string="k=v", regex_pattern=r"(\w)=(\w)", replace=r"\2=\1") == ("v=k",)
    with pytest.raises(NodeInputError, match="RegexReplace.*regex_pattern"):
        _run(registry, "RegexReplace", string="x", regex_pattern="(", replace="")


def test_preview_any_text(registry: Any) -> None:
    import torch

    def text(value: Any) -> str:
        out = _run(registry, "PreviewAny", source=value)
        assert set(out) == {"ui", "result"} and set(out["ui"]) == {"text"}
        assert out["result"] == out["ui"]["text"]  # the STRING output carries the shown text
        return str(out["ui"]["text"][0])

    assert text("plain") == "plain"
    assert text(17) == "17" and text(0.5) == "0.5" and text(True) == "True"
    assert text([1, "a", None]) == '[1, "a", null]'
    assert text({"k": [1.5]}) == '{"k": [1.5]}'
    assert text(torch.zeros(2)) == str(torch.zeros(2))  # not JSON: falls back to str()
    assert text(None) == "None"


def test_preview_any_output_can_be_linked(registry: Any) -> None:
    from executor.testing import run_graph

    run = run_graph(registry, {
        "1": {"class_type": "PreviewAny", "inputs": {"source": 12.5}},
        "2": {"class_type": "StringLength", "inputs": {"string": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    })
    assert run.ui["1"]["text"] == ["12.5"] and run.ui["3"]["text"] == ["4"]
