"""/templates/... (ComfyUI's optional templates package), Loom's template browser list, /node_replacements."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import templates
from app.loom import Loom
from app.templates import TemplateLibrary, requirements
from server import create_app

LoomFactory = Callable[..., Loom]

EDITOR_OK = {"nodes": [{"id": 1, "type": "Const", "widgets_values": [2]}, {"id": 2, "type": "Show"},
                       {"id": 3, "type": "Note", "widgets_values": ["a note, not a node"]}], "links": []}
EDITOR_MISSING = {"nodes": [
    {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["absent.safetensors"],
     "properties": {"models": [{"name": "absent.safetensors", "directory": "checkpoints", "url": "https://x"}]}},
    {"id": 2, "type": "LoraLoader", "widgets_values": ["have.safetensors", 1.0, 1.0]},
    {"id": 3, "type": "2b0c7d3e-sub", "widgets_values": []}],
    "definitions": {"subgraphs": [{"id": "2b0c7d3e-sub", "nodes": [{"id": 9, "type": "Show"}]}]}}
API_PROMPT = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Nope", "inputs": {"ckpt_name": "gone.ckpt", "x": ["1", 0]}}}


def test_requirements_of_each_format() -> None:
    ok = requirements(EDITOR_OK)
    assert ok.node_types == {"Const", "Show"} and ok.models == frozenset()
    missing = requirements(EDITOR_MISSING)
    assert missing.node_types == {"CheckpointLoaderSimple", "LoraLoader", "Show"}  # subgraph id is not a type
    assert missing.models == {("checkpoints", "absent.safetensors"), (None, "have.safetensors")}
    api = requirements(API_PROMPT)
    assert api.node_types == {"Const", "Nope"} and api.models == {(None, "gone.ckpt")}


@pytest.fixture
def workflows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "ok.ui.json").write_text(json.dumps(EDITOR_OK))
    (folder / "missing.ui.json").write_text(json.dumps(EDITOR_MISSING))
    (folder / "api.json").write_text(json.dumps(API_PROMPT))
    (folder / "broken.json").write_text("{not json")
    monkeypatch.setattr(templates, "WORKFLOWS_DIR", folder)
    monkeypatch.setattr(templates, "PACKAGES", ("loom_test_no_such_templates_package",))
    return folder


async def test_template_browser_marks_missing_nodes_and_models(aiohttp_client: Any, make_loom: LoomFactory,
                                                               workflows: Path, tmp_path: Path) -> None:
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    (loras / "have.safetensors").write_bytes(b"x")
    client = await aiohttp_client(create_app(make_loom(), web_root=None))
    data = await (await client.get("/loom/templates")).json()
    assert data["package"] is None
    by_name = {t["name"]: t for t in data["templates"]}
    assert set(by_name) == {"ok.ui.json", "missing.ui.json", "api.json", "broken.json"}
    assert by_name["ok.ui.json"]["available"] is True and by_name["ok.ui.json"]["missing_nodes"] == []
    missing = by_name["missing.ui.json"]
    assert missing["missing_nodes"] == ["CheckpointLoaderSimple", "LoraLoader"]
    assert missing["missing_models"] == ["checkpoints/absent.safetensors"] and missing["available"] is False
    assert by_name["api.json"]["missing_nodes"] == ["Nope"] and by_name["api.json"]["missing_models"] == ["gone.ckpt"]
    assert by_name["broken.json"]["readable"] is False and by_name["broken.json"]["available"] is False
    resp = await client.get(by_name["ok.ui.json"]["url"])
    assert resp.status == 200 and await resp.json() == EDITOR_OK
    for bad in ("/loom/workflows/..%2Fsecret.json", "/loom/workflows/nope.json", "/loom/workflows/%2e%2e"):
        assert (await client.get(bad)).status in (400, 403, 404), bad
    # ComfyUI answers 404 for /templates/... when its templates package is not installed; so does Loom
    resp = await client.get("/templates/index.json")
    assert resp.status == 404 and "comfyui-workflow-templates" in (await resp.json())["error"]["details"]


def test_discover_skips_assets_of_missing_bundles(tmp_path: Path) -> None:
    have = tmp_path / "index.json"
    have.write_text("[]")
    entries = [SimpleNamespace(template_id="index", assets=[SimpleNamespace(filename="index.json")]),
               SimpleNamespace(template_id="t", assets=[SimpleNamespace(filename="t-1.webp")])]

    def get_asset_path(template_id: str, filename: str) -> str:
        if filename == "index.json":
            return str(have)
        raise FileNotFoundError(filename)  # its media bundle is not installed

    fake = SimpleNamespace(iter_templates=lambda: entries, get_asset_path=get_asset_path)

    def importer(name: str) -> Any:
        if name != "comfyui_workflow_templates_core":
            raise ImportError(name)
        return fake

    lib = TemplateLibrary.discover(importer)
    assert lib.package == "comfyui_workflow_templates_core" and lib.assets == {"index.json": str(have)}
    assert TemplateLibrary.discover(lambda name: (_ for _ in ()).throw(ImportError(name))).assets == {}


async def test_real_templates_package(client: TestClient) -> None:
    pytest.importorskip("comfyui_workflow_templates_core",
                        reason="optional dependency: pip install comfyui-workflow-templates (core + json bundles)")
    resp = await client.get("/templates/index.json")
    assert resp.status == 200
    index = await resp.json()
    assert isinstance(index, list) and index and "templates" in index[0]
    first = index[0]["templates"][0]["name"]
    workflow = await (await client.get(f"/templates/{first}.json")).json()
    assert "nodes" in workflow
    assert (await client.get("/templates/../server.py")).status == 404
    listed = await (await client.get("/loom/templates")).json()
    from_package = [t for t in listed["templates"] if t["source"] == "templates"]
    assert from_package and any(t["missing_nodes"] for t in from_package)  # the fake registry has few nodes


async def test_node_replacements_and_feature_flags(client: TestClient) -> None:
    assert await (await client.get("/api/node_replacements")).json() == {}
    features = await (await client.get("/api/features")).json()
    assert features["node_replacements"] is True and features["assets"] is False
    assert features["extension"] == {"manager": {"supports_v4": True}}
