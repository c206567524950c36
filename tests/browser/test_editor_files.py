"""Saving, exporting, restoring and opening documents the server cannot run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from editor_helpers import DEFAULT_TYPES, drop_file, node_types, open_editor, set_widget, widget

pytestmark = pytest.mark.browser


def test_save_and_export_api_download(page: Any, fake_server: Any, tmp_path: Path) -> None:
    open_editor(page, fake_server.url)
    set_widget(page, 3, "steps", 11)
    page.once("dialog", lambda d: d.accept("my flow"))
    with page.expect_download() as saved:
        page.click("#loom-save")
    assert saved.value.suggested_filename == "my flow.json"
    ui = json.loads(Path(saved.value.path()).read_text())
    assert ui["version"] == 0.4 and len(ui["nodes"]) == 7 and len(ui["links"]) == 9
    ks = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    assert ks["widgets_values"][1] == "randomize" and ks["widgets_values"][2] == 11
    with page.expect_download() as exported:
        page.click("#loom-export-api")
    api = json.loads(Path(exported.value.path()).read_text())
    assert api["3"]["inputs"]["steps"] == 11 and api["3"]["class_type"] == "KSampler"
    assert "control_after_generate" not in api["3"]["inputs"]


def test_graph_survives_reload(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    set_widget(page, 5, "width", 320)
    page.evaluate("loom.autosave()")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert widget(page, 5, "width") == 320
    page.click("#loom-default")
    assert widget(page, 5, "width") == 128
    assert node_types(page) == sorted(DEFAULT_TYPES)


def test_unknown_node_type_is_reported(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    wf = page.evaluate("loom.graph.serialize()")
    wf["nodes"].append({"id": 50, "type": "FancyUpscaler", "pos": [0, 0], "size": [200, 80], "flags": {},
                        "order": 7, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                        "widgets_values": [2]})
    wf["last_node_id"] = 50
    drop_file(page, json.dumps(wf).encode(), "custom.json", "application/json")
    page.wait_for_selector("#loom-error-dialog")
    assert "FancyUpscaler" in page.locator("#loom-error-dialog").inner_text()
    page.click("#loom-error-dialog button")
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    assert "does not know" in page.locator("#loom-error-dialog").inner_text()
    # The unknown node survives a save unchanged.
    saved = page.evaluate("loom.graph.serialize().nodes.find(n => n.id === 50)")
    assert saved["type"] == "FancyUpscaler" and saved["widgets_values"] == [2]


def test_not_a_workflow_file_is_explained(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    drop_file(page, b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "plain.png", "image/png")
    page.wait_for_selector("#loom-error-dialog")
    assert "no \"workflow\" or \"prompt\"" in page.locator("#loom-error-dialog").inner_text()
    assert node_types(page) == sorted(DEFAULT_TYPES)


def test_undo_redo_and_mode_shortcuts(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    page.evaluate("loom.graph.getNodeById(7).widgets[0].value = 'changed'; loom.history.check()")
    page.evaluate("loom.graph.remove(loom.graph.getNodeById(5)); loom.history.check()")
    assert len(node_types(page)) == 6
    page.mouse.click(700, 850)  # focus the canvas
    page.keyboard.press("Control+z")
    page.wait_for_function("() => loom.graph._nodes.length === 7")
    assert widget(page, 7, "text") == "changed"
    assert page.evaluate("loom.graph.getNodeById(3).inputs[3].link") is not None  # the latent link is back
    page.keyboard.press("Control+z")
    page.wait_for_function("() => loom.graph.getNodeById(7).widgets[0].value === 'blurry'")
    page.keyboard.press("Control+y")
    page.wait_for_function("() => loom.graph.getNodeById(7).widgets[0].value === 'changed'")
    page.evaluate("loom.canvas.selectNodes([loom.graph.getNodeById(9)])")
    page.keyboard.press("Control+m")
    assert page.evaluate("loom.graph.getNodeById(9).mode") == 2
    page.keyboard.press("Control+m")
    assert page.evaluate("loom.graph.getNodeById(9).mode") == 0
    page.keyboard.press("Control+b")
    assert page.evaluate("loom.graph.getNodeById(9).mode") == 4


def test_widget_values_saved_as_object_load_by_name(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    wf = page.evaluate("loom.graph.serialize()")
    latent = next(n for n in wf["nodes"] if n["type"] == "EmptyLatentImage")
    latent["widgets_values"] = {"height": 96, "width": 160, "batch_size": 2}
    page.evaluate("wf => loom.loadWorkflow(wf)", wf)
    assert page.evaluate("loom.buildPrompt()['5'].inputs") == {"width": 160, "height": 96, "batch_size": 2}


def test_dynamic_prompts_expand_at_queue_time(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    page.locator("textarea.loom-textarea").first.fill("a {red|red} {fox|fox}\n// a note for me\n/* hidden */sky")
    text = page.evaluate("loom.buildPrompt()['6'].inputs.text")
    assert text == "a red fox\n\nsky"
    assert widget(page, 6, "text").startswith("a {red|red}")  # the widget keeps the template
