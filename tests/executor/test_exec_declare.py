"""executor.declare: typed node declarations produce the plain V1 contract."""
from __future__ import annotations

from typing import Any

import pytest

from executor import NodeRegistry, RegistrationError
from executor.declare import Boolean, Combo, Float, Hidden, Int, Socket, String, node
from executor.testing import run_graph, run_node


def test_declared_node_is_a_v1_node() -> None:
    files = ["a.png"]

    @node("Blend", category="image", outputs=[("INT", "total"), "STRING"], display_name="Blend It",
          description="adds")
    class Blend:
        a = Int(default=1, min=0, max=10, tooltip="first")
        b = Float(default=0.5, step=0.1)
        label = String(default="x", multiline=True)
        flag = Boolean(default=True)
        file = Combo(lambda: files)
        mask = Socket("MASK", optional=True)
        uid = Hidden("UNIQUE_ID")

        def run(self, a: int, b: float, label: str, flag: bool, file: str, uid: str, mask: Any = None
                ) -> tuple[int, str]:
            return (a + int(b * 10), f"{label}:{file}:{uid}:{flag}")

    reg = NodeRegistry()
    reg.register(Blend.NODE_ID, Blend, display_name=Blend.DISPLAY_NAME)  # type: ignore[attr-defined]
    files.append("b.png")  # combo options stay live
    info = reg.object_info()["Blend"]
    assert info["input"] == {
        "required": {"a": ["INT", {"default": 1, "min": 0, "max": 10, "tooltip": "first"}],
                     "b": ["FLOAT", {"default": 0.5, "step": 0.1}],
                     "label": ["STRING", {"default": "x", "multiline": True}],
                     "flag": ["BOOLEAN", {"default": True}], "file": [["a.png", "b.png"]]},
        "optional": {"mask": ["MASK"]}, "hidden": {"uid": "UNIQUE_ID"}}
    assert info["input_order"]["required"] == ["a", "b", "label", "flag", "file"]
    assert info["output"] == ["INT", "STRING"] and info["output_name"] == ["total", "STRING"]
    assert info["display_name"] == "Blend It" and info["category"] == "image" and info["description"] == "adds"
    assert run_node(Blend, a=2, b=0.3, label="L", flag=False, file="b.png").result == (5, "L:b.png:node:False")
    result = run_graph(reg, {"1": {"class_type": "Blend", "inputs": {"a": 1, "b": 0.0, "label": "q", "flag": 1,
                                                                    "file": "a.png"}}}, outputs=["1"],
                       validate=False)
    assert result.value("1", 1) == "q:a.png:1:1"


def test_declared_node_errors_teach() -> None:
    with pytest.raises(RegistrationError, match="has no method 'run'"):
        @node("Broken")
        class Broken:
            x = Int()

    @node("OutOfRange", outputs=["INT"])
    class OutOfRange:
        x = Int(default=50, max=10)

        def run(self, x: int) -> tuple[int]:
            return (x,)

    with pytest.raises(RegistrationError, match="above max"):
        NodeRegistry().register("OutOfRange", OutOfRange)
