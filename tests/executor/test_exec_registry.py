"""NodeRegistry: class checks at registration, collisions, /object_info shape."""
from __future__ import annotations

import json
from typing import Any

import pytest

from executor import DuplicateNodeError, NodeRegistry, RegistrationError


def _node(**attrs: Any) -> type:
    base: dict[str, Any] = {
        "INPUT_TYPES": classmethod(lambda cls: {"required": {"x": ("INT", {"default": 1, "min": 0, "max": 10})}}),
        "RETURN_TYPES": ("INT",),
        "FUNCTION": "run",
        "run": lambda self, x: (x,),
    }
    base.update(attrs)
    return type("N", (), base)


def test_valid_class_registers_and_is_listed() -> None:
    reg = NodeRegistry()
    reg.register("N", _node(), display_name="Nice N")
    assert "N" in reg and reg.names() == ["N"] and reg.get("N").__name__ == "N"
    assert reg.source_of("N") == "builtin" and reg.display_name_of("N") == "Nice N"


@pytest.mark.parametrize(("attrs", "fragment"), [
    ({"FUNCTION": "missing"}, "no method of that name"),
    ({"FUNCTION": None}, "FUNCTION must name"),
    ({"RETURN_TYPES": "INT"}, "trailing comma"),
    ({"RETURN_NAMES": ("a", "b")}, "RETURN_NAMES has 2 entries"),
    ({"OUTPUT_IS_LIST": (True, False)}, "OUTPUT_IS_LIST has 2 entries"),
    ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": ("INT", {"default": 11, "max": 10})}})},
     "above max"),
    ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": ("INT", {"default": -1, "min": 0})}})},
     "below min"),
    ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": (["a", "b"], {"default": "c"})}})},
     "not one of the options"),
    ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": "INT"}})}, "must be a tuple"),
    ({"INPUT_TYPES": classmethod(lambda cls: {"requird": {}})}, "unknown section 'requird'"),
    ({"INPUT_TYPES": classmethod(lambda cls: 1 / 0)}, "INPUT_TYPES() raised ZeroDivisionError"),
    ({"OUTPUT_NODE": "yes"}, "OUTPUT_NODE must be True or False"),
])
def test_invalid_classes_raise_teaching_errors(attrs: dict[str, Any], fragment: str) -> None:
    reg = NodeRegistry()
    with pytest.raises(RegistrationError) as info:
        reg.register("Bad", _node(**attrs))
    assert fragment in str(info.value) and "'Bad'" in str(info.value)
    assert "Bad" not in reg


def test_a_display_only_node_needs_no_function_and_is_never_run() -> None:
    """efficiency-nodes' "Simple Eval Examples": a text box, no outputs, not an output node, no FUNCTION."""
    from executor.testing import run_graph

    reg = NodeRegistry()
    reg.register("Examples", _node(RETURN_TYPES=(), FUNCTION=None))
    with pytest.raises(RegistrationError, match="FUNCTION must name"):  # an output node must have one
        reg.register("Shows", _node(RETURN_TYPES=(), FUNCTION=None, OUTPUT_NODE=True))
    reg.register("Out", _node(RETURN_TYPES=(), OUTPUT_NODE=True, run=lambda self, x: {"ui": {"x": [x]}}))
    run = run_graph(reg, {"e": {"class_type": "Examples", "inputs": {"x": 1}},
                          "o": {"class_type": "Out", "inputs": {"x": 2}}})
    assert run.outcome.executed == ["o"]


def test_missing_return_types_and_non_class() -> None:
    cls = _node()
    del cls.RETURN_TYPES
    with pytest.raises(RegistrationError, match="no RETURN_TYPES"):
        NodeRegistry().register("X", cls)
    with pytest.raises(RegistrationError, match="expected a class"):
        NodeRegistry().register("X", object())  # type: ignore[arg-type]


def test_duplicate_names_both_sources_and_keeps_existing() -> None:
    reg = NodeRegistry()
    first, second = _node(), _node()
    reg.register("N", first, source="custom_nodes.pack_a")
    with pytest.raises(DuplicateNodeError) as info:
        reg.register("N", second, source="custom_nodes.pack_b")
    assert "pack_a" in str(info.value) and "pack_b" in str(info.value)
    assert isinstance(info.value, RegistrationError)
    assert reg.get("N") is first


def test_register_many_registers_good_and_reports_all_bad() -> None:
    reg = NodeRegistry()
    with pytest.raises(RegistrationError) as info:
        reg.register_many({"A": _node(), "B": _node(FUNCTION="nope"), "C": _node(RETURN_TYPES="X")},
                          {"A": "Alpha"}, source="custom_nodes.pack")
    assert len(info.value.failures) == 2
    assert reg.names() == ["A"] and reg.display_name_of("A") == "Alpha"


def test_object_info_shape_v1() -> None:
    reg = NodeRegistry()
    cls = _node(
        INPUT_TYPES=classmethod(lambda cls: {
            "required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1}),
                         "sampler": (["euler", "ddim"], {"tooltip": "t"})},
            "optional": {"mask": ("MASK",)},
            "hidden": {"unique_id": "UNIQUE_ID"}}),
        RETURN_TYPES=("LATENT", "INT"), RETURN_NAMES=("latent", "n"), OUTPUT_IS_LIST=(False, True),
        CATEGORY="sampling", DESCRIPTION="does things", OUTPUT_TOOLTIPS=("l", "n"), DEPRECATED=True,
        run=lambda self, **kw: (1, 2))
    reg.register("S", cls, display_name="Sampler S", source="custom_nodes.my_pack")
    reg.register("Plain", _node())
    reg.register("Bare", _node(), source="bare_pack")
    assert reg.python_module_of("Bare") == "custom_nodes.bare_pack"
    info = reg.object_info()
    s = info["S"]
    assert s == {
        "input": {"required": {"seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615}],
                               "sampler": [["euler", "ddim"], {"tooltip": "t"}]},
                  "optional": {"mask": ["MASK"]}, "hidden": {"unique_id": "UNIQUE_ID"}},
        "input_order": {"required": ["seed", "sampler"], "optional": ["mask"], "hidden": ["unique_id"]},
        "output": ["LATENT", "INT"], "output_is_list": [False, True], "output_name": ["latent", "n"],
        "name": "S", "display_name": "Sampler S", "description": "does things",
        "python_module": "custom_nodes.my_pack", "category": "sampling", "output_node": False,
        "output_tooltips": ["l", "n"], "deprecated": True,
    }
    plain = info["Plain"]
    assert plain["python_module"] == "nodes" and plain["category"] == "sd" and plain["description"] == ""
    assert plain["output_name"] == ["INT"] and plain["output_is_list"] == [False] and plain["display_name"] == "Plain"
    assert "deprecated" not in plain and "experimental" not in plain
    assert json.loads(json.dumps(info)) == info
    assert reg.object_info_for("S") == {"S": s} and reg.object_info_for("Nope") == {}


def test_object_info_omits_nodes_whose_definition_breaks_later() -> None:
    state = {"broken": False}

    def types(cls: type) -> dict[str, Any]:
        if state["broken"]:
            raise OSError("folder vanished")
        return {"required": {}}

    reg = NodeRegistry()
    reg.register("Flaky", _node(INPUT_TYPES=classmethod(types)))
    reg.register("Ok", _node())
    state["broken"] = True
    assert list(reg.object_info()) == ["Ok"]
    assert reg.object_info_for("Flaky") == {}


def test_what_comfyui_lets_pass_is_a_warning_for_packs_and_validation_still_checks_values() -> None:
    """KJNodes declares a default below min, a False default on a list of choices, a list default on a FLOAT and
    (type, options, tooltip) tuples: ComfyUI registers them, so packs' nodes register with warnings."""
    from executor import PromptValidationError, validate_prompt
    from executor.testing import run_graph

    lax = _node(INPUT_TYPES=classmethod(lambda cls: {"required": {
        "x": ("INT", {"default": -1, "min": 0, "max": 10}, "a third entry"),
        "mode": (["a", "b"], {"default": False}),
        "scale": ("FLOAT", {"default": [1.0]}),
    }}), run=lambda self, x, mode, scale: (x,))
    reg = NodeRegistry()
    with pytest.raises(RegistrationError, match="3 entries"):
        reg.register("Strict", lax)  # built-ins and direct registrations stay strict
    warnings: list[str] = []
    reg.register("Lax", lax, source="custom_nodes.kj", warnings=warnings)
    assert len(warnings) == 4 and all("ComfyUI accepts this" in w for w in warnings)
    assert any("3 entries" in w for w in warnings) and any("not one of the options" in w for w in warnings)
    info = reg.object_info()["Lax"]["input"]["required"]
    assert info["x"][1]["min"] == 0
    reg.register("Out", _node(RETURN_TYPES=(), OUTPUT_NODE=True, INPUT_TYPES=classmethod(
        lambda cls: {"required": {"v": ("INT", {})}}), run=lambda self, v: {"ui": {"v": [v]}}))
    good = {"1": {"class_type": "Lax", "inputs": {"x": 3, "mode": "b", "scale": 2.0}},
            "2": {"class_type": "Out", "inputs": {"v": ["1", 0]}}}
    assert run_graph(reg, good).outcome.executed == ["1", "2"]
    with pytest.raises(PromptValidationError):  # the values a prompt sends are still checked
        validate_prompt(reg, {**good, "1": {"class_type": "Lax", "inputs": {"x": -1, "mode": "c", "scale": 2.0}}})
