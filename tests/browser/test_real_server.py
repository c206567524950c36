"""The editor against Loom's real server.py and the tiny SD1.5 checkpoint: run, files, workflows, errors, auth."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from editor_helpers import (
    DEFAULT_TYPES,
    drop_file,
    node_types,
    open_editor,
    set_widget,
    wait_output_image,
    widget,
)

pytestmark = pytest.mark.browser
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_WORKFLOWS = sorted(WORKFLOWS.glob("*.ui.json"))


def _open(page: Any, server: Any) -> None:
    open_editor(page, f"{server.url}?token={server.token}")


def _small_default_graph(page: Any) -> None:
    set_widget(page, 5, "width", 64)
    set_widget(page, 5, "height", 64)
    set_widget(page, 3, "steps", 2)


def test_real_default_graph_runs_and_png_reopens(page: Any, real_server: Any) -> None:
    _open(page, real_server)
    assert node_types(page) == sorted(DEFAULT_TYPES)
    assert widget(page, 4, "ckpt_name") == "tiny-sd15.safetensors"
    _small_default_graph(page)
    page.locator("textarea.loom-textarea").first.fill("a yellow square on a green background")
    set_widget(page, 3, "seed", 42)
    set_widget(page, 3, "control_after_generate", "fixed")
    page.evaluate("""() => { window.runLog = [];
        for (const t of ['b_preview', 'progress']) loom.api.addEventListener(t, () => window.runLog.push(
            [t, loom.graph.getNodeById(3).loom.running])); }""")
    page.click("#loom-queue")
    src = wait_output_image(page, 9, timeout=240000)  # first run loads torch + the model: slow on a busy CPU
    log = page.evaluate("window.runLog")
    assert ["progress", True] in log and ["b_preview", True] in log  # live previews while KSampler runs
    assert page.evaluate("!!loom.graph.getNodeById(3).loom.preview")
    png = page.request.get(src).body()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert widget(page, 3, "seed") == 42  # "fixed" leaves the seed alone
    before = page.evaluate("JSON.stringify(loom.graph.serialize().nodes.map(n => [n.id, n.type, n.widgets_values]))")
    page.click("#loom-clear")
    drop_file(page, png, "ComfyUI_00001_.png", "image/png")
    page.wait_for_function("() => loom.graph._nodes.length === 7")
    after = page.evaluate("JSON.stringify(loom.graph.serialize().nodes.map(n => [n.id, n.type, n.widgets_values]))")
    assert sorted(map(json.dumps, json.loads(after))) == sorted(map(json.dumps, json.loads(before)))
    assert widget(page, 6, "text") == "a yellow square on a green background"
    page.click("#loom-tab-history")
    page.wait_for_selector("#loom-history-list .loom-item.success")


@pytest.mark.parametrize("ui_file", UI_WORKFLOWS, ids=[p.name for p in UI_WORKFLOWS])
def test_real_workflow_files_load_and_match_api_format(page: Any, real_server: Any, ui_file: Path) -> None:
    _open(page, real_server)
    missing = page.evaluate("wf => loom.loadWorkflow(wf, { quiet: true })", json.loads(ui_file.read_text()))
    assert missing == []
    built = page.evaluate("loom.buildPrompt()")
    api = json.loads(ui_file.with_name(ui_file.name.replace(".ui.json", ".json")).read_text())
    assert {k: (v["class_type"], v["inputs"]) for k, v in built.items()} == \
           {k: (v["class_type"], v["inputs"]) for k, v in api.items()}
    # The API file opens too and gives back the same prompt.
    page.evaluate("p => loom.loadWorkflow(p, { api: true, quiet: true })", api)
    rebuilt = page.evaluate("loom.buildPrompt()")
    assert {k: v["inputs"] for k, v in rebuilt.items()} == {k: v["inputs"] for k, v in api.items()}


def test_workflows_folder_is_not_empty() -> None:
    assert UI_WORKFLOWS, "workflows/*.ui.json missing: the editor tests load each of them"


def test_real_validation_error_on_node(page: Any, real_server: Any) -> None:
    _open(page, real_server)
    assert page.locator("#loom-preview-method").input_value() == "default"  # fresh browser profile
    page.evaluate("loom.graph.getNodeById(3).disconnectInput(0)")  # KSampler.model
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    assert "#3 KSampler" in page.locator("#loom-error-dialog").inner_text()
    assert page.evaluate("loom.graph.getNodeById(3).loom.errors.length") >= 1
    assert "model" in page.evaluate("[...loom.graph.getNodeById(3).loom.inputErrors]")


def test_real_auth_token_flow(page: Any, real_server: Any) -> None:
    resp = page.goto(real_server.url)
    assert resp.status == 401  # the server's sign-in page
    _open(page, real_server)
    assert "token=" not in page.url  # the editor drops the token from the address bar
    assert node_types(page) == sorted(DEFAULT_TYPES)
    page.reload()  # the cookie keeps the session
    page.wait_for_selector("body[data-ready='true']")
    # POST /prompt goes through with the cookie: a validation answer (400), not 401.
    page.evaluate("loom.graph.getNodeById(8).disconnectInput(1)")  # VAEDecode.vae
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    assert "#8 VAEDecode" in page.locator("#loom-error-dialog").inner_text()
