"""Every route, every garbage body: a 4xx with a JSON error or a success, never a 5xx."""
from __future__ import annotations

import re
from typing import Any

import pytest

from app.loom import Loom
from server import create_app

GARBAGE: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b'{"clear": "yes", "delete": {"a": 1}, "prompt_id": [], "clientId": 5}', "application/json"),
    (b"\x00\xff\xfe garbage", "application/octet-stream"),
    (b"--xx\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc\r\n--xx--\r\n",
     "multipart/form-data; boundary=xx"),
    (b"--broken", "multipart/form-data; boundary=zz"),
]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.parametrize("body, ctype", GARBAGE)
async def test_no_route_answers_5xx(aiohttp_client: Any, loom: Loom, body: bytes, ctype: str) -> None:
    app = create_app(loom, web_root=None)
    routes = sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                     if r.resource is not None and r.method != "HEAD"})
    client = await aiohttp_client(app)
    for method, path in routes:
        if path.startswith("/loom/") or path.startswith("/api/loom/"):
            continue  # the custom node loader's own routes are tested by its owner
        resp = await client.request(method, _concrete(path), data=body, headers={"Content-Type": ctype})
        raw = await resp.read()
        assert resp.status < 500, (method, path, resp.status, raw[:200])
        if resp.status >= 400 and raw:
            assert resp.content_type == "application/json", (method, path, resp.status)
            assert "error" in resp.__class__.__name__ or b"error" in raw, (method, path)
    assert loom.backend.status().alive
