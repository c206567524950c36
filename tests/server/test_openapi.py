"""/openapi.json lists exactly the routes registered on the app."""
from __future__ import annotations

import re
from typing import Any

from app.loom import Loom
from server import create_app


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def test_every_route_documented_and_vice_versa(loom: Loom) -> None:
    from app.openapi import openapi_document

    app = create_app(loom, web_root=None)
    registered = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        registered.add((route.method.lower(), _openapi_path(path)))
    from app.state import EXTRA_ROUTES

    extra = app[EXTRA_ROUTES]
    assert extra == [], extra  # no pack loaded: every route is in the route table
    doc = openapi_document(extra)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert registered - documented == set(), "routes missing from openapi.json"
    assert documented - registered == set(), "openapi.json documents routes the app does not serve"
    assert ("get", "/api/api/jobs") in registered and ("get", "/internal/logs") in registered


async def test_openapi_served(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "post" in doc["paths"]["/api/prompt"] and "get" in doc["paths"]["/ws"]
