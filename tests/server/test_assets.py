"""Read-only assets API over input/, output/ and the model folders (ComfyUI `app/assets/api` shapes)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.routes_assets import asset_id

ASSET_KEYS = {"id", "name", "display_name", "size", "tags", "user_metadata", "created_at",  # None fields left out
              "updated_at", "last_access_time"}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "input" / "sub").mkdir(parents=True, exist_ok=True)
    (tmp_path / "input" / "cat.png").write_bytes(b"\x89PNG cat")
    (tmp_path / "input" / "sub" / "dog.png").write_bytes(b"\x89PNG dog!")
    (tmp_path / "output").mkdir(exist_ok=True)
    (tmp_path / "output" / "ComfyUI_00001_.png").write_bytes(b"\x89PNG out")
    (tmp_path / "output" / "evil.svg").write_text("<svg onload='alert(1)'/>")
    (tmp_path / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"0" * 64)
    secret = tmp_path / "secret.txt"
    secret.write_text("not an asset")
    os.symlink(secret, tmp_path / "input" / "leak.txt")  # a symlink out of input/ is never listed
    now = time.time()
    for i, p in enumerate(sorted((tmp_path / "input").rglob("*.png"))):
        os.utime(p, (now - 100 + i, now - 100 + i))
    return tmp_path


async def _json(client: TestClient, url: str, status: int = 200) -> Any:
    resp = await client.get(url)
    assert resp.status == status, (url, await resp.text())
    return await resp.json()


async def test_list_filters_and_shape(client: TestClient, files: Path) -> None:
    data = await _json(client, "/api/assets?limit=500")
    names = {a["name"] for a in data["assets"]}
    assert names == {"cat.png", "dog.png", "ComfyUI_00001_.png", "evil.svg", "tiny.safetensors"}
    assert data["total"] == 5 and data["has_more"] is False
    for asset in data["assets"]:
        assert ASSET_KEYS <= set(asset), asset
    inputs = await _json(client, "/api/assets?include_tags=input&sort=name&order=asc")
    assert [a["user_metadata"]["filename"] for a in inputs["assets"]] == ["cat.png", "sub/dog.png"]
    dog = inputs["assets"][1]
    assert dog["tags"] == ["input"] and dog["size"] == 9 and dog["mime_type"] == "image/png"
    assert dog["preview_url"] == "/api/view?type=input&filename=dog.png&subfolder=sub"
    assert dog["id"] == asset_id(("input",), "sub/dog.png")
    models = await _json(client, "/api/assets?include_tags=models,checkpoints")
    assert [(a["name"], a["tags"], a["loader_path"]) for a in models["assets"]] == [
        ("tiny.safetensors", ["models", "checkpoints"], "tiny.safetensors")]
    assert "preview_url" not in models["assets"][0]
    no_models = await _json(client, "/api/assets?exclude_tags=models&name_contains=COMFY")
    assert [a["name"] for a in no_models["assets"]] == ["ComfyUI_00001_.png"]
    page = await _json(client, "/api/assets?include_tags=input&limit=1&offset=0&sort=updated_at&order=desc")
    assert page["total"] == 2 and page["has_more"] is True and page["assets"][0]["name"] == "dog.png"
    for bad in ("limit=0", "limit=501", "offset=-1", "limit=x"):
        err = await _json(client, f"/api/assets?{bad}", 400)
        assert err["error"]["code"] == "INVALID_QUERY" and set(err["error"]) == {"code", "message", "details"}


async def test_detail_content_and_confinement(client: TestClient, files: Path) -> None:
    cat = asset_id(("input",), "cat.png")
    detail = await _json(client, f"/api/assets/{cat}")
    assert detail["name"] == "cat.png" and detail["id"] == cat
    assert await _json(client, f"/api/assets/{cat.upper()}") == detail
    resp = await client.get(f"/api/assets/{cat}/content?disposition=inline")
    assert resp.status == 200 and await resp.read() == b"\x89PNG cat"
    assert resp.headers["Content-Disposition"].startswith("inline;")
    svg = await client.get(f"/api/assets/{asset_id(('output',), 'evil.svg')}/content?disposition=inline")
    assert svg.status == 200 and svg.headers["Content-Disposition"].startswith("attachment;")
    assert svg.headers["Content-Type"] == "application/octet-stream"
    assert svg.headers["X-Content-Type-Options"] == "nosniff"
    leak = asset_id(("input",), "leak.txt")
    err = await _json(client, f"/api/assets/{leak}", 404)
    assert err["error"]["code"] == "ASSET_NOT_FOUND"
    assert (await client.get(f"/api/assets/{leak}/content")).status == 404
    assert (await client.get("/api/assets/not-a-uuid")).status == 404


async def test_tags(client: TestClient, files: Path) -> None:
    data = await _json(client, "/api/tags")
    assert data["tags"][:2] == [{"name": "input", "count": 2}, {"name": "output", "count": 2}]
    assert {"name": "checkpoints", "count": 1} in data["tags"] and data["has_more"] is False
    named = await _json(client, "/api/tags?order=name_asc&prefix=o&limit=1")
    assert named == {"tags": [{"name": "output", "count": 2}], "total": 1, "has_more": False}
    assert (await _json(client, "/api/tags?order=random", 400))["error"]["code"] == "INVALID_QUERY"
