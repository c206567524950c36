"""UI <-> API conversion of the example workflows and of the frontend's special cases (no torch run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.workflow_format import GraphFormatError, api_to_ui, is_ui_workflow, load_graph_file, ui_to_api

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
NAMES = ["txt2img", "img2img", "inpaint", "inpaint_model"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from engine.paths import ModelPaths
    from executor import NodeRegistry
    from nodes import register_builtin_nodes
    from nodes.services import NodeServices

    reg = NodeRegistry()
    register_builtin_nodes(reg, NodeServices(paths=ModelPaths(tmp_path_factory.mktemp("base"))))
    return reg


def types_of(registry: Any) -> Any:
    return lambda name: registry.get(name).INPUT_TYPES() if name in registry else None


def strip_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    return {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in prompt.items()}


@pytest.mark.parametrize("name", NAMES)
def test_example_ui_files_convert_to_their_api_files(registry: Any, name: str) -> None:
    api = json.loads((WORKFLOWS / f"{name}.json").read_text())
    ui = json.loads((WORKFLOWS / f"{name}.ui.json").read_text())
    assert is_ui_workflow(ui) and ui["version"] == 0.4 and not is_ui_workflow(api)
    assert strip_meta(ui_to_api(ui, types_of(registry))) == strip_meta(api)
    ckpts = {n["inputs"]["ckpt_name"] for n in api.values() if n["class_type"] == "CheckpointLoaderSimple"}
    # the 9-channel workflow loads the demo's inpainting variant, the others the demo model
    from app.demo_install import DEMO_INPAINT_NAME, DEMO_NAME

    assert ckpts == {DEMO_INPAINT_NAME if name == "inpaint_model" else DEMO_NAME}


FAMILY_NAMES = ["flux1_dev_txt2img", "flux1_schnell_txt2img", "sd35_medium_txt2img"]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_ui_files_convert_to_their_api_files(registry: Any, name: str) -> None:
    """The SD3.5 / Flux examples (workflows/families, need the real model files) in both formats agree."""
    api = json.loads((WORKFLOWS / "families" / f"{name}.json").read_text())
    ui = json.loads((WORKFLOWS / "families" / f"{name}.ui.json").read_text())
    assert is_ui_workflow(ui) and ui["version"] == 0.4 and not is_ui_workflow(api)
    assert strip_meta(ui_to_api(ui, types_of(registry))) == strip_meta(api)
    assert sorted(p.name for p in (WORKFLOWS / "families").glob("*.json")) == sorted(
        f"{n}{ext}" for n in FAMILY_NAMES for ext in (".json", ".ui.json"))


def test_widget_extras_are_skipped(registry: Any) -> None:
    ui = json.loads((WORKFLOWS / "img2img.ui.json").read_text())
    ks = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    assert ks["widgets_values"][:2] == [42, "fixed"]
    ks["widgets_values"][1] = "randomize"
    load = next(n for n in ui["nodes"] if n["type"] == "LoadImage")
    assert load["widgets_values"] == ["loom_example_init.png", "image"]
    api = ui_to_api(ui, types_of(registry))
    assert api[str(ks["id"])]["inputs"]["steps"] == 20 and api[str(ks["id"])]["inputs"]["seed"] == 42


def test_dynamic_combo_widgets_follow_their_combo(registry: Any) -> None:
    """The editor writes a DynamicCombo's value, then the chosen option's widgets (nested combos likewise)."""
    def save(id_: int, widgets: list[Any]) -> dict[str, Any]:
        return {"id": id_, "type": "SaveImageAdvanced", "mode": 0, "widgets_values": widgets, "outputs": [],
                "inputs": [{"name": "images", "type": "IMAGE", "link": None}]}

    ui = {"nodes": [save(1, ["Qwen_image_2.1", "png", "8-bit", "sRGB"]),  # as in ComfyUI's templates
                    save(2, ["x", "exr", "32-bit float", "linear"]),
                    save(3, ["y", "avif", "auto", "HDR", 30, "animated", 12.0, 2]),
                    {"id": 4, "type": "ResizeImageMaskNode", "mode": 0, "inputs": [], "outputs": [],
                     "widgets_values": ["scale by multiplier", 1.5, "bicubic"]}],
          "links": []}
    api = ui_to_api(ui, types_of(registry))
    assert api["1"]["inputs"] == {"filename_prefix": "Qwen_image_2.1", "format": "png", "format.bit_depth": "8-bit",
                                  "format.input_color_space": "sRGB"}
    assert api["2"]["inputs"]["format.input_color_space"] == "linear"
    assert api["3"]["inputs"] == {"filename_prefix": "y", "format": "avif", "format.bit_depth": "auto",
                                  "format.input_color_space": "HDR", "format.crf": 30,
                                  "format.save_mode": "animated", "format.save_mode.fps": 12.0,
                                  "format.save_mode.loop_count": 2}
    assert api["4"]["inputs"] == {"resize_type": "scale by multiplier", "resize_type.multiplier": 1.5,
                                  "scale_method": "bicubic"}


def _hand_made() -> dict[str, Any]:
    """Loader -> Reroute -> (bypassed CLIPSetLastLayer) -> CLIPTextEncode, seed from a PrimitiveNode, a muted
    node and a note."""
    def node(id_: int, type_: str, inputs: list[Any], widgets: list[Any], mode: int = 0,
             outputs: list[Any] | None = None) -> dict[str, Any]:
        return {"id": id_, "type": type_, "mode": mode, "inputs": inputs, "outputs": outputs or [],
                "widgets_values": widgets}

    return {
        "last_node_id": 9, "last_link_id": 9, "version": 0.4,
        "nodes": [
            node(1, "CheckpointLoaderSimple", [], ["m.safetensors"]),
            node(2, "Reroute", [{"name": "", "type": "*", "link": 1}], []),
            node(3, "CLIPSetLastLayer", [{"name": "clip", "type": "CLIP", "link": 2}], [-2], mode=4,
                 outputs=[{"name": "CLIP", "type": "CLIP", "links": [3]}]),
            node(4, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 3}], ["a cat"]),
            node(5, "PrimitiveNode", [], [777, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [4]}]),
            node(6, "KSampler", [{"name": "model", "type": "MODEL", "link": 5},
                                 {"name": "positive", "type": "CONDITIONING", "link": 6},
                                 {"name": "seed", "type": "INT", "link": 4, "widget": {"name": "seed"}}],
                 [1, "randomize", 20, 8.0, "euler", "normal", 1.0]),
            node(7, "ImageInvert", [], [], mode=2),
            node(8, "Note", [], ["hello"]),
        ],
        "links": [[1, 1, 1, 2, 0, "CLIP"], [2, 2, 0, 3, 0, "CLIP"], [3, 3, 0, 4, 0, "CLIP"],
                  [4, 5, 0, 6, 2, "INT"], [5, 1, 0, 6, 0, "MODEL"], [6, 4, 0, 6, 1, "CONDITIONING"]],
    }


def test_reroute_bypass_primitive_mute_and_notes(registry: Any) -> None:
    api = ui_to_api(_hand_made(), types_of(registry))
    assert sorted(api, key=int) == ["1", "4", "6"]
    assert api["4"]["inputs"] == {"text": "a cat", "clip": ["1", 1]}
    ks = api["6"]["inputs"]
    assert ks["seed"] == 777 and ks["model"] == ["1", 0] and ks["positive"] == ["4", 0]
    assert ks["steps"] == 20 and ks["cfg"] == 8.0 and ks["denoise"] == 1.0


def test_unknown_types_and_bad_files(registry: Any, tmp_path: Path) -> None:
    wf = _hand_made()
    wf["nodes"].append({"id": 9, "type": "NotInstalledNode", "mode": 0, "inputs": [], "widgets_values": []})
    with pytest.raises(GraphFormatError, match="node 9 has type 'NotInstalledNode'"):
        ui_to_api(wf, types_of(registry))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(GraphFormatError, match="neither an API prompt"):
        load_graph_file(bad)
    with pytest.raises(GraphFormatError, match="not found"):
        load_graph_file(tmp_path / "missing.json")


def test_api_to_ui_round_trip(registry: Any) -> None:
    api = json.loads((WORKFLOWS / "inpaint_model.json").read_text())

    def outs(name: str) -> list[tuple[str, str]]:
        cls = registry.get(name)
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        return list(zip(names, cls.RETURN_TYPES, strict=True))

    ui = api_to_ui(api, types_of(registry), outs)
    assert len(ui["links"]) == sum(isinstance(v, list) for n in api.values() for v in n["inputs"].values())
    assert strip_meta(ui_to_api(ui, types_of(registry))) == strip_meta(api)
