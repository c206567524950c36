"""Information and boot routes: system_stats, models, embeddings, view_metadata, extensions, i18n, internal (jobs: test_jobs.py)."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from app.loom import Loom


async def test_system_stats_shape(client: Any) -> None:
    data = await (await client.get("/api/system_stats")).json()
    for key in ("os", "python_version", "embedded_python", "comfyui_version", "pytorch_version", "argv",
                "ram_total", "ram_free"):
        assert key in data["system"], key
    dev = data["devices"][0]
    assert set(dev) >= {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"}


async def test_system_stats_reports_the_worker(client: Any) -> None:
    data = await (await client.get("/system_stats")).json()
    (worker,) = data["workers"]
    assert worker["id"] == "local" and worker["alive"] is True
    assert worker["running_prompt"] is None and worker["prompts_done"] == 0
    assert isinstance(worker["loaded_models"], list)


def _safetensors(path: Path, meta: dict[str, str] | None) -> None:
    header: dict[str, Any] = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if meta is not None:
        header["__metadata__"] = meta
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 4)


async def test_models_embeddings_and_metadata(client: Any, loom: Loom) -> None:
    models = loom.config.models_dir
    (models / "checkpoints" / "sd").mkdir(parents=True)
    _safetensors(models / "checkpoints" / "sd" / "a.safetensors", {"title": "tiny"})
    _safetensors(models / "checkpoints" / "b.safetensors", None)
    (models / "checkpoints" / "notes.txt").write_text("x")
    (models / "embeddings").mkdir(exist_ok=True)
    (models / "embeddings" / "easyneg.pt").write_bytes(b"x")
    keys = await (await client.get("/models")).json()
    assert "checkpoints" in keys and "loras" in keys
    assert await (await client.get("/api/models/checkpoints")).json() == ["b.safetensors", "sd/a.safetensors"]
    assert (await client.get("/models/unet")).status == 404
    assert (await client.get("/models/nope")).status == 404
    assert await (await client.get("/embeddings")).json() == ["easyneg"]
    resp = await client.get("/view_metadata/checkpoints?filename=sd/a.safetensors")
    assert await resp.json() == {"title": "tiny"}
    for q, status in (("filename=b.safetensors", 404), ("filename=missing.safetensors", 404),
                      ("filename=notes.txt", 404), ("", 404), ("filename=../../x.safetensors", 400)):
        assert (await client.get(f"/view_metadata/checkpoints?{q}")).status == status, q
    exp = await (await client.get("/experiment/models")).json()
    assert {"name": "checkpoints", "folders": [str(models / "checkpoints"),
                                               str(loom.config.output_dir / "checkpoints")]} in exp
    files = await (await client.get("/experiment/models/checkpoints")).json()
    assert [f["name"] for f in files] == ["b.safetensors", "sd/a.safetensors"] and files[0]["pathIndex"] == 0
    assert (await client.get("/experiment/models/preview/checkpoints/0/b.safetensors")).status == 404


async def test_custom_node_boot_routes(client: Any, loom: Loom) -> None:
    pack = loom.config.custom_nodes_dirs[0] / "pack_a"
    (pack / "locales" / "en").mkdir(parents=True)
    (pack / "locales" / "en" / "main.json").write_text('{"hello": "Hello"}')
    (pack / "locales" / "en" / "nodeDefs.json").write_text('{"MyNode": {"display_name": "Mine"}}')
    (pack / "example_workflows").mkdir()
    (pack / "example_workflows" / "demo.json").write_text("{}")
    (pack / "subgraphs").mkdir()
    (pack / "subgraphs" / "blue.json").write_text('{"nodes": []}')
    assert await (await client.get("/api/i18n")).json() == {
        "en": {"hello": "Hello", "nodeDefs": {"MyNode": {"display_name": "Mine"}}}}
    assert await (await client.get("/workflow_templates")).json() == {"pack_a": ["demo"]}
    # the frontend fetches a pack's template at /api/workflow_templates/{pack}/{name}.json (ComfyUI: a static folder)
    assert await (await client.get("/api/workflow_templates/pack_a/demo.json")).json() == {}
    for bad in ("/api/workflow_templates/pack_a/nope.json", "/api/workflow_templates/pack_b/demo.json",
                "/api/workflow_templates/pack_a/..%2F..%2Fsecret.json"):
        assert (await client.get(bad)).status in (400, 403, 404), bad
    subs = await (await client.get("/global_subgraphs")).json()
    (sid, info), = subs.items()
    assert info == {"source": "custom_node", "name": "blue", "info": {"node_pack": "custom_nodes.pack_a"}}
    one = await (await client.get(f"/global_subgraphs/{sid}")).json()
    assert one["data"] == '{"nodes": []}'
    assert await (await client.get("/global_subgraphs/unknown")).json() is None
    assert await (await client.get("/extensions")).json() == []


async def test_internal_routes(client: Any, loom: Loom) -> None:
    (loom.config.output_dir / "a.png").write_bytes(b"x")
    (loom.config.output_dir / ".hidden").write_bytes(b"x")
    assert await (await client.get("/internal/files/output")).json() == ["a.png"]
    resp = await client.get("/internal/files/models")
    assert resp.status == 400 and await resp.json() == {"error": "Invalid directory type"}
    assert (await client.get("/api/internal/files/output")).status == 404  # never /api-prefixed
    fp = await (await client.get("/internal/folder_paths")).json()
    assert fp["checkpoints"][0].endswith("checkpoints")
    assert isinstance(await (await client.get("/internal/logs")).json(), str)
    raw = await (await client.get("/internal/logs/raw")).json()
    assert set(raw) == {"entries", "size"}
    resp = await client.patch("/internal/logs/subscribe", json={"clientId": "x", "enabled": True})
    assert resp.status == 200
    assert (await client.patch("/internal/logs/subscribe", json=[1])).status == 400


async def test_index_placeholder_and_404_json(client: Any) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and "Loom" in await resp.text()
    assert resp.headers["Cache-Control"] == "no-cache"
    resp = await client.get("/no/such/thing")
    assert resp.status == 404 and "error" in await resp.json()
    resp = await client.put("/prompt")
    assert resp.status == 405 and "error" in await resp.json()


async def test_index_serves_web_root(aiohttp_client: Any, loom: Loom, tmp_path: Path) -> None:
    from server import create_app

    root = tmp_path / "webroot"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html>editor</html>")
    (root / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "outside.txt").write_text("TOP SECRET")
    c = await aiohttp_client(create_app(loom, web_root=root))
    assert "editor" in await (await c.get("/")).text()
    resp = await c.get("/assets/app.js")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    for raw in ("/../outside.txt", "/%2E%2E/outside.txt", "/assets/..%2F..%2Foutside.txt"):
        resp = await c.get(raw)
        assert resp.status in (400, 403, 404) and b"TOP SECRET" not in await resp.read(), raw


async def test_custom_node_web_directory_served(aiohttp_client: Any, loom: Loom) -> None:
    from server import create_app

    pack = loom.config.custom_nodes_dirs[0] / "web_pack"
    (pack / "js").mkdir(parents=True)
    (pack / "js" / "ext.js").write_text("export const x = 1;")
    (pack / "__init__.py").write_text('WEB_DIRECTORY = "./js"\nNODE_CLASS_MAPPINGS = {}\n')
    (loom.config.base_directory / "secret.js").write_text("TOP SECRET")
    c = await aiohttp_client(create_app(loom, web_root=None))
    assert "/extensions/web_pack/ext.js" in await (await c.get("/api/extensions")).json()
    resp = await c.get("/extensions/web_pack/ext.js")
    assert resp.status == 200 and "export const x" in await resp.text()
    for raw in ("/extensions/web_pack/..%2F..%2F..%2Fsecret.js", "/extensions/web_pack/%2E%2E/%2E%2E/secret.js"):
        resp = await c.get(raw)
        assert resp.status in (400, 403, 404) and b"TOP SECRET" not in await resp.read(), raw


def test_find_web_root_order(tmp_path: Path) -> None:
    from app.config import Config
    from app.static import find_web_root

    repo = tmp_path / "repo"
    assert find_web_root(Config(), repo) is None
    (repo / "web").mkdir(parents=True)
    (repo / "web" / "index.html").write_text("src")
    assert find_web_root(Config(), repo) == (repo / "web").resolve()
    (repo / "web" / "dist").mkdir()
    (repo / "web" / "dist" / "index.html").write_text("built")
    assert find_web_root(Config(), repo) == (repo / "web" / "dist").resolve()
    custom = tmp_path / "fe"
    custom.mkdir()
    (custom / "index.html").write_text("custom")
    assert find_web_root(Config(front_end_root=custom), repo) == custom.resolve()
    assert find_web_root(Config(front_end_root=tmp_path / "missing"), repo) == (repo / "web" / "dist").resolve()
