"""The browser editor against a stand-in server: default graph, queueing, run feedback, files, errors."""
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
    posted,
    set_widget,
    wait_output_image,
    widget,
)

pytestmark = pytest.mark.browser


def test_default_graph_appears_with_first_checkpoint(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    assert node_types(page) == sorted(DEFAULT_TYPES)
    assert widget(page, 4, "ckpt_name") == "tiny-sd15.safetensors"
    links = page.evaluate("loom.graph.serialize().links")
    assert len(links) == 9
    # KSampler model input comes from the checkpoint loader's MODEL output.
    assert [4, 0, 3, 0, "MODEL"] == [links[0][1], links[0][2], links[0][3], links[0][4], links[0][5]]
    assert page.locator("textarea.loom-textarea").count() == 2


def test_queue_changed_prompt_and_seed_shows_output(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    area = page.locator("textarea.loom-textarea").first
    area.fill("a red fox in the snow")
    set_widget(page, 3, "seed", 1234)
    set_widget(page, 3, "control_after_generate", "increment")
    page.evaluate("""() => { window.seen = [];
        loom.api.addEventListener('progress', () => { const s = loom.graph.getNodeById(3).loom;
            window.seen.push([s.running, s.progress.value, s.progress.max,
                              document.querySelector('#loom-progress-text').textContent]); }); }""")
    page.click("#loom-queue")
    src = wait_output_image(page, 9)
    seen = page.evaluate("window.seen")
    assert seen[0] == [True, 1, 20, "1/20"] and seen[-1] == [True, 20, 20, "20/20"]
    assert page.evaluate("loom.graph.getNodeById(3).loom.running") is False
    assert "loom_" in src
    body = posted(fake_server.url)[-1]
    prompt = body["prompt"]
    assert prompt["6"]["inputs"]["text"] == "a red fox in the snow"
    assert prompt["3"]["inputs"]["seed"] == 1234
    assert prompt["3"]["inputs"]["model"] == ["4", 0]
    assert prompt["3"]["inputs"]["positive"] == ["6", 0]
    assert prompt["9"] == {"inputs": {"images": ["8", 0], "filename_prefix": "loom"},
                           "class_type": "SaveImage", "_meta": {"title": "Save Image"}}
    assert body["client_id"] and body["extra_data"]["extra_pnginfo"]["workflow"]["version"] == 0.4
    assert "preview_method" not in body["extra_data"]  # "server default" sends nothing

    # control after generate ran after queueing
    assert widget(page, 3, "seed") == 1235
    page.click("#loom-tab-gallery")
    assert page.locator(".loom-gallery-img").count() >= 1
    page.wait_for_function("() => document.querySelector('#loom-live-preview').src.startsWith('blob:')")
    page.select_option("#loom-preview-method", "taesd")
    page.evaluate("loom.queue()")  # resolves once /prompt answered
    assert posted(fake_server.url)[-1]["extra_data"]["preview_method"] == "taesd"


def test_saved_png_dropped_back_restores_graph(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    set_widget(page, 3, "steps", 7)
    page.locator("textarea.loom-textarea").nth(1).fill("ugly, blurry")
    before = page.evaluate("JSON.stringify(loom.graph.serialize().nodes.map(n => [n.id, n.type, n.widgets_values]))")
    page.click("#loom-queue")
    src = wait_output_image(page, 9)
    png = page.request.get(src).body()
    page.click("#loom-clear")
    assert node_types(page) == []
    drop_file(page, png, "ComfyUI_00001_.png", "image/png")
    page.wait_for_function("() => loom.graph._nodes.length === 7")
    after = page.evaluate("JSON.stringify(loom.graph.serialize().nodes.map(n => [n.id, n.type, n.widgets_values]))")
    # The seed's control ran after queueing, so compare everything but the KSampler seed.
    b, a = json.loads(before), json.loads(after)
    for entry in (*b, *a):
        if entry[1] == "KSampler":
            entry[2][0] = None
    assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))
    assert widget(page, 7, "text") == "ugly, blurry"


def test_missing_input_error_is_shown_on_node(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    page.evaluate("loom.graph.getNodeById(3).disconnectInput(0)")  # KSampler.model
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    text = page.locator("#loom-error-dialog").inner_text()
    assert "Required input is missing" in text and "#3 KSampler" in text
    errors = page.evaluate("[...loom.graph.getNodeById(3).loom.inputErrors]")
    assert errors == ["model"]


def test_incompatible_link_is_refused_and_compatible_types_connect(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    # MODEL output into a CLIP input: refused by the canvas.
    refused = page.evaluate("""() => {
        const ckpt = loom.graph.getNodeById(4), enc = loom.graph.getNodeById(6);
        return ckpt.connect(0, enc, 0) === null && enc.inputs[0].link !== null; }""")
    assert refused
    # "STRING,INT" accepts an INT-typed Primitive-free link, "*" Reroute accepts anything.
    ok = page.evaluate("""() => {
        const LG = loom.graph;
        const cat = window.loomLiteGraph.createNode('StringConcat'); LG.add(cat);
        const r = window.loomLiteGraph.createNode('Reroute'); LG.add(r);
        const a = LG.getNodeById(4).connect(0, r, 0) !== null;
        const b = r.connect(0, LG.getNodeById(3), 0) !== null;
        const slot = cat.inputs.findIndex(s => s.name === 'string_b');
        const seedOut = LG.getNodeById(5).connect(0, cat, slot);
        return [a, b, seedOut === null]; }""")
    assert ok == [True, True, True]
    # A Primitive feeds widget inputs only.
    prim = page.evaluate("""() => { const LG = loom.graph, p = window.loomLiteGraph.createNode('PrimitiveNode'); LG.add(p);
        const ks = LG.getNodeById(3);
        const toModel = p.connect(0, ks, 0);
        const toSteps = p.connect(0, ks, ks.inputs.findIndex(s => s.name === 'steps'));
        return [toModel === null, toSteps !== null, p.outputs[0].type]; }""")
    assert prim == [True, True, "INT"]


def test_validation_error_for_bad_link_type(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    # Force a bad link past the canvas checks (as a hand-edited file would): LATENT into VAEDecode.vae.
    page.evaluate("""() => {
        const wf = loom.graph.serialize();
        const link = wf.links.find(l => l[3] === 8 && l[4] === 1);
        link[1] = 5; link[2] = 0;
        loom.loadWorkflow(wf); }""")
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    assert "Return type mismatch" in page.locator("#loom-error-dialog").inner_text()
    assert page.evaluate("[...loom.graph.getNodeById(8).loom.inputErrors]") == ["vae"]


def test_muted_bypassed_primitive_resolution(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    prompt = page.evaluate("""() => {
        const LG = loom.graph, L = window.loomLiteGraph;
        const inv = L.createNode('ImageInvert'); LG.add(inv);
        LG.getNodeById(8).connect(0, inv, 0);
        inv.connect(0, LG.getNodeById(9), 0);
        inv.mode = 4;                       // bypass: SaveImage gets VAEDecode directly
        const prim = L.createNode('PrimitiveNode'); LG.add(prim);
        const steps = LG.getNodeById(3).inputs.findIndex(s => s.name === 'steps');
        prim.connect(0, LG.getNodeById(3), steps);
        prim.widgets[0].value = 13;
        const pv = L.createNode('PreviewImage'); LG.add(pv);
        LG.getNodeById(8).connect(0, pv, 0);
        pv.mode = 2;                        // muted: not emitted
        return loom.buildPrompt(); }""")
    assert prompt["9"]["inputs"]["images"] == ["8", 0]
    assert prompt["3"]["inputs"]["steps"] == 13
    assert all(v["class_type"] not in ("ImageInvert", "PreviewImage", "PrimitiveNode") for v in prompt.values())


def test_ui_workflow_roundtrip_comfyui_file(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    data = json.loads((Path(__file__).parent / "data" / "comfyui_txt2img.json").read_text())
    page.evaluate("wf => loom.loadWorkflow(wf)", data)
    saved = page.evaluate("loom.graph.serialize()")
    assert saved["version"] == 0.4
    assert saved["last_node_id"] == data["last_node_id"] and saved["last_link_id"] == data["last_link_id"]
    assert sorted(map(tuple, (link[:6] for link in saved["links"]))) == sorted(map(tuple, data["links"]))
    by_id = {n["id"]: n for n in saved["nodes"]}
    for node in data["nodes"]:
        assert by_id[node["id"]]["widgets_values"] == node["widgets_values"], node["type"]
        assert by_id[node["id"]]["pos"] == node["pos"]
    assert data["groups"][0]["title"] == saved["groups"][0]["title"]
    prompt = page.evaluate("loom.buildPrompt()")
    assert prompt["3"]["inputs"]["seed"] == data["nodes"][4]["widgets_values"][0]
    assert prompt["3"]["inputs"]["sampler_name"] == "euler"


def test_api_format_json_opens(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    api = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
           "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "hello", "clip": ["4", 1]}},
           "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
           "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 3, "cfg": 7.5, "sampler_name": "euler",
                 "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
                 "negative": ["6", 0], "latent_image": ["5", 0]}},
           "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
           "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "api", "images": ["8", 0]}}}
    drop_file(page, json.dumps(api).encode(), "workflow_api.json", "application/json")
    page.wait_for_function("() => loom.graph._nodes.length === 6")
    rebuilt = page.evaluate("loom.buildPrompt()")
    for nid, node in api.items():
        assert rebuilt[nid]["inputs"] == node["inputs"], nid


def test_refresh_updates_model_list(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    (fake_server.root / "models" / "checkpoints" / "another.safetensors").write_bytes(b"")
    try:
        page.click("#loom-refresh")
        page.wait_for_function("() => loom.graph.getNodeById(4).widgets[0].options.values.includes('another.safetensors')")
    finally:
        (fake_server.root / "models" / "checkpoints" / "another.safetensors").unlink()


def test_queue_panel_cancel_and_interrupt(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    set_widget(page, 3, "steps", 10000)
    page.evaluate("() => { loom.queue(); loom.queue(); }")
    page.click("#loom-tab-queue")
    page.wait_for_selector(".loom-item.pending .loom-cancel", timeout=10000)
    page.click(".loom-item.pending .loom-cancel")
    page.wait_for_selector(".loom-item.pending", state="detached", timeout=10000)
    page.click("#loom-interrupt")
    page.wait_for_function("() => document.querySelector('#loom-status').textContent.startsWith('Interrupted')")


def test_auth_token_flow(page: Any, token_server: Any) -> None:
    resp = page.goto(token_server.url)
    assert resp.status == 401
    open_editor(page, token_server.url + "?token=" + token_server.token)
    assert "token=" not in page.url
    assert node_types(page) == sorted(DEFAULT_TYPES)


def test_runtime_error_is_shown_on_node(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    set_widget(page, 3, "steps", 666)
    page.click("#loom-queue")
    page.wait_for_selector("#loom-error-dialog")
    assert "ValueError: steps=666 is cursed" in page.locator("#loom-error-dialog").inner_text()
    assert page.evaluate("loom.graph.getNodeById(3).loom.errors") == ["ValueError: steps=666 is cursed"]
    page.wait_for_timeout(1500)
    assert page.locator('#loom-status').inner_text() == 'Error in node #3'
    page.click("#loom-tab-history")
    page.wait_for_selector("#loom-history-list .loom-item.error")


def test_modern_comfyui_layout_with_virtual_muted_bypassed_nodes(page: Any, fake_server: Any) -> None:
    open_editor(page, fake_server.url)
    data = json.loads((Path(__file__).parent / "data" / "comfyui_modern_layout.json").read_text())
    assert page.evaluate("wf => loom.loadWorkflow(wf)", data) == []
    prompt = page.evaluate("() => { Math.random = () => 0; return loom.buildPrompt(); }")
    assert sorted(prompt, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    assert prompt["3"]["inputs"]["seed"] == 777                 # from the PrimitiveNode
    assert prompt["3"]["inputs"]["scheduler"] == "karras" and prompt["3"]["inputs"]["steps"] == 3
    assert prompt["8"]["inputs"]["vae"] == ["4", 2]              # through the Reroute
    assert prompt["9"]["inputs"]["images"] == ["8", 0]           # around the bypassed ImageInvert
    assert prompt["6"]["inputs"]["text"] == "a lighthouse, storm sea"
    saved = {n["id"]: n for n in page.evaluate("loom.graph.serialize().nodes")}
    assert saved[10]["widgets_values"] == [777, "fixed"]
    seed_slot = saved[3]["inputs"][4]
    assert (seed_slot["name"], seed_slot["widget"], seed_slot["link"]) == ("seed", {"name": "seed"}, 10)
    assert saved[12]["mode"] == 4 and saved[13]["mode"] == 2
    assert saved[14]["widgets_values"] == ["Saved in the newer ComfyUI layout"]
