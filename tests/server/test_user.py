"""/users, /settings, /userdata, /v2/userdata, including traversal."""
from __future__ import annotations

import os
from typing import Any

import pytest

from app.loom import Loom


async def test_users_single_user(client: Any) -> None:
    assert await (await client.get("/api/users")).json() == {"storage": "server", "migrated": False}
    resp = await client.post("/users", json={"username": "bob"})
    assert resp.status == 400 and "single-user" in (await resp.json())["error"]["message"]


async def test_settings_roundtrip(client: Any, loom: Loom) -> None:
    assert await (await client.get("/settings")).json() == {}
    assert (await client.post("/settings", json={"Comfy.A": 1, "Comfy.B": "x"})).status == 200
    assert (await client.post("/api/settings/Comfy.B", json={"nested": [1, 2]})).status == 200
    assert await (await client.get("/settings")).json() == {"Comfy.A": 1, "Comfy.B": {"nested": [1, 2]}}
    assert await (await client.get("/settings/Comfy.A")).json() == 1
    assert await (await client.get("/settings/unknown")).json() is None
    assert (loom.config.user_dir / "default" / "comfy.settings.json").is_file()
    assert (await client.post("/settings", json=[1])).status == 400
    assert (await client.post("/settings", data=b"{oops")).status == 400
    assert (await (await client.get("/users")).json())["migrated"] is True


async def test_userdata_crud_and_listing(client: Any) -> None:
    resp = await client.post("/userdata/workflows%2Fa.json", data=b'{"x": 1}')
    assert resp.status == 200 and await resp.json() == "workflows/a.json"
    resp = await client.post("/api/userdata/workflows%2Fsub%2Fb.json?full_info=true", data=b"{}")
    info = await resp.json()
    assert info["path"] == "workflows/sub/b.json" and info["size"] == 2
    resp = await client.post("/userdata/workflows%2Fa.json?overwrite=false", data=b"{}")
    assert resp.status == 409
    assert await (await client.get("/userdata/workflows%2Fa.json")).read() == b'{"x": 1}'
    listing = await (await client.get("/userdata?dir=workflows&recurse=true&split=false")).json()
    assert listing == ["a.json", "sub/b.json"]
    split = await (await client.get("/userdata?dir=workflows&recurse=true")).json()
    assert split == [["a.json", "a.json"], ["sub/b.json", "sub", "b.json"]]
    full = await (await client.get("/userdata?dir=workflows&recurse=true&full_info=true")).json()
    assert [f["path"] for f in full] == ["a.json", "sub/b.json"]
    assert (await client.get("/userdata")).status == 400
    assert (await client.get("/userdata?dir=nothere")).status == 404
    v2 = await (await client.get("/v2/userdata")).json()
    assert [(e["path"], e["type"]) for e in v2] == [  # directories first, then by name
        ("workflows/sub", "directory"), ("workflows", "directory"), ("workflows/a.json", "file"),
        ("workflows/sub/b.json", "file")]
    resp = await client.post("/userdata/workflows%2Fa.json/move/workflows%2Fc.json")
    assert resp.status == 200 and await resp.json() == "workflows/c.json"
    assert (await client.get("/userdata/workflows%2Fa.json")).status == 404
    resp = await client.post("/userdata/workflows%2Fc.json/move/workflows%2Fsub%2Fb.json?overwrite=false")
    assert resp.status == 409
    assert (await client.delete("/userdata/workflows%2Fc.json")).status == 204
    assert (await client.delete("/userdata/workflows%2Fc.json")).status == 404


@pytest.mark.parametrize("method, url", [
    ("GET", "/userdata/..%2F..%2Fsecret.txt"),
    ("GET", "/userdata/%2Fetc%2Fpasswd"),
    ("GET", "/userdata/link%2Fsecret.txt"),
    ("GET", "/userdata/..%252F..%252Fsecret.txt"),
    ("POST", "/userdata/..%2Fevil.txt"),
    ("POST", "/userdata/link%2Fevil.txt"),
    ("DELETE", "/userdata/..%2F..%2Fsecret.txt"),
    ("POST", "/userdata/ok.txt/move/..%2F..%2Fmoved.txt"),
    ("GET", "/userdata?dir=..%2F.."),
    ("GET", "/userdata?dir=link"),
    ("GET", "/v2/userdata?path=..%2F.."),
    ("GET", "/v2/userdata?path=link"),
])
async def test_userdata_traversal_refused(client: Any, loom: Loom, method: str, url: str) -> None:
    base = loom.config.base_directory
    (base / "secret.txt").write_text("TOP SECRET")
    root = loom.config.user_dir / "default"
    root.mkdir(parents=True)
    (root / "ok.txt").write_text("ok")
    os.symlink(base, root / "link")
    resp = await client.request(method, url, data=b"x")
    assert resp.status in (400, 403), (url, resp.status)
    body = await resp.read()
    assert b"TOP SECRET" not in body
    assert (base / "secret.txt").read_text() == "TOP SECRET"
    assert not (base / "evil.txt").exists() and not (loom.config.user_dir / "evil.txt").exists()
    assert not (base / "moved.txt").exists()
