"""Loom's editor with ComfyUI's dynamic inputs (Autogrow, DynamicCombo) against the real server."""
from __future__ import annotations

import io
from typing import Any

import pytest
from editor_helpers import open_editor, wait_output_image
from PIL import Image

pytestmark = pytest.mark.browser


def _add(page: Any, node_type: str) -> int:
    return int(page.evaluate("t => { const n = loomLiteGraph.createNode(t); loom.graph.add(n); return n.id; }",
                             node_type))


def _widgets(page: Any, node_id: int) -> list[list[Any]]:
    return page.evaluate("id => loom.graph.getNodeById(id).widgets.map(w => [w.name, w.value])", node_id)


def _inputs(page: Any, node_id: int) -> list[str]:
    return page.evaluate("id => loom.graph.getNodeById(id).inputs.map(s => s.name)", node_id)


def _choose(page: Any, node_id: int, name: str, value: Any) -> None:
    page.evaluate("""([id, name, v]) => { const w = loom.graph.getNodeById(id).widgets.find(w => w.name === name);
        w.value = v; w.callback(v); }""", [node_id, name, value])


def _connect(page: Any, source: int, slot: int, target: int, input_name: str) -> None:
    page.evaluate("""([s, slot, t, name]) => { const target = loom.graph.getNodeById(t);
        loom.graph.getNodeById(s).connect(slot, target, target.inputs.findIndex(i => i.name === name)); }""",
                  [source, slot, target, input_name])


def test_dynamic_combo_and_autogrow_build_run_and_reload(page: Any, real_server: Any) -> None:
    open_editor(page, f"{real_server.url}?token={real_server.token}")
    page.evaluate("loom.graph.clear()")
    resize = _add(page, "ResizeImageMaskNode")
    assert [w[0] for w in _widgets(page, resize)] == ["resize_type", "resize_type.width", "resize_type.height",
                                                      "resize_type.crop", "scale_method"]
    _choose(page, resize, "resize_type", "scale by multiplier")
    assert _widgets(page, resize) == [["resize_type", "scale by multiplier"], ["resize_type.multiplier", 1.0],
                                      ["scale_method", "area"]]
    _choose(page, resize, "resize_type.multiplier", 0.5)
    _choose(page, resize, "resize_type", "match size")  # an option with a socket input
    assert "resize_type.match" in _inputs(page, resize)
    _choose(page, resize, "resize_type", "scale by multiplier")
    assert "resize_type.match" not in _inputs(page, resize)
    _choose(page, resize, "resize_type.multiplier", 0.5)

    batch = _add(page, "BatchImagesNode")
    assert _inputs(page, batch) == ["images.image0", "images.image1", "images.image2"]
    load = _add(page, "LoadImage")
    page.evaluate("id => { const w = loom.graph.getNodeById(id).widgets.find(w => w.name === 'image');"
                  " w.value = 'loom_example_init.png'; }", load)
    _connect(page, load, 0, resize, "input")
    _connect(page, resize, 0, batch, "images.image0")
    _connect(page, load, 0, batch, "images.image1")
    assert _inputs(page, batch) == ["images.image0", "images.image1", "images.image2"]
    _connect(page, load, 0, batch, "images.image2")
    assert _inputs(page, batch) == ["images.image0", "images.image1", "images.image2", "images.image3"]
    page.evaluate("id => loom.graph.getNodeById(id).disconnectInput(2)", batch)  # image2 again: trailing slot goes
    assert _inputs(page, batch) == ["images.image0", "images.image1", "images.image2"]
    save = _add(page, "SaveImage")
    _connect(page, batch, 0, save, "images")

    prompt = page.evaluate("loom.buildPrompt()")
    assert prompt[str(resize)]["inputs"] == {"input": [str(load), 0], "resize_type": "scale by multiplier",
                                             "resize_type.multiplier": 0.5, "scale_method": "area"}
    assert prompt[str(batch)]["inputs"] == {"images.image0": [str(resize), 0], "images.image1": [str(load), 0]}
    page.click("#loom-queue")
    src = wait_output_image(page, save, timeout=120000)
    source = Image.open(real_server.root / "input" / "loom_example_init.png")
    out = Image.open(io.BytesIO(page.request.get(src).body()))
    # the batch takes the first image's size: the half-size resize of the input
    assert out.size == (round(source.size[0] * 0.5), round(source.size[1] * 0.5))

    saved = page.evaluate("JSON.stringify(loom.graph.serialize())")
    page.evaluate("g => loom.loadWorkflow(JSON.parse(g), { quiet: true })", saved)
    assert _widgets(page, resize) == [["resize_type", "scale by multiplier"], ["resize_type.multiplier", 0.5],
                                      ["scale_method", "area"]]
    assert page.evaluate("loom.buildPrompt()") == prompt


def test_a_comfyui_saved_dynamic_node_loads(page: Any, real_server: Any) -> None:
    """A node as ComfyUI's frontend saves it (widgets_values in widget order, dotted socket names)."""
    open_editor(page, f"{real_server.url}?token={real_server.token}")
    workflow = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 1, "INT"]],
                "nodes": [
                    {"id": 1, "type": "PrimitiveInt", "pos": [0, 0], "size": [200, 60], "mode": 0,
                     "inputs": [], "outputs": [{"name": "INT", "type": "INT", "links": [1]}],
                     "widgets_values": [640, "fixed"], "properties": {}},
                    {"id": 2, "type": "ResizeImageMaskNode", "pos": [300, 0], "size": [300, 150], "mode": 0,
                     "inputs": [{"localized_name": "input", "name": "input", "type": "IMAGE,MASK", "link": None},
                                {"localized_name": "width", "name": "resize_type.width", "type": "INT",
                                 "widget": {"name": "resize_type.width"}, "link": 1}],
                     "outputs": [{"name": "resized", "type": "IMAGE", "links": []}],
                     "widgets_values": ["scale width", 1024, "lanczos"], "properties": {}}]}
    page.evaluate("g => loom.loadWorkflow(g, { quiet: true })", workflow)
    assert _widgets(page, 2) == [["resize_type", "scale width"], ["resize_type.width", 1024],
                                 ["scale_method", "lanczos"]]
    inputs = page.evaluate("loom.buildPrompt()")["2"]["inputs"]
    assert inputs["resize_type"] == "scale width" and inputs["resize_type.width"] == ["1", 0]
    assert inputs["scale_method"] == "lanczos"
