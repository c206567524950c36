"""Packs served in-process by Loom's real server: routes, /object_info, /extensions, reports, ws events."""
from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import real_packs

from app.config import Config
from app.engine_factory import Engine
from app.loom import Loom
from executor import InterruptFlag, NodeRegistry, PromptExecutor, validate_prompt
from server import create_app

PACKS = Path(__file__).parent / "packs"
SERVED = ("good_pack", "routes_pack", "runtime_error_pack", "raising_pack", "v3_pack", "pip_pack")


@pytest.fixture
def loom(tmp_path: Path) -> Iterator[Loom]:
    root = tmp_path / "custom_nodes"
    root.mkdir()
    for name in SERVED:
        shutil.copytree(PACKS / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(base_directory=tmp_path, custom_node_dirs=(root,))
    registry = NodeRegistry()
    loom = Loom(config=config, engine=Engine(registry, PromptExecutor(registry)), validate_fn=validate_prompt,
                interrupt_flag=InterruptFlag())
    yield loom
    loom.close()
    real_packs.unload_server_packs()


@pytest.fixture
async def client(aiohttp_client: Any, loom: Loom) -> Any:
    return await aiohttp_client(create_app(loom, web_root=None))


async def _history(client: Any, prompt_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        data = await (await client.get(f"/history/{prompt_id}")).json()
        if prompt_id in data:
            return data[prompt_id]
        await asyncio.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish")


async def test_server_starts_with_broken_packs_and_reports_each(client: Any) -> None:
    body = await (await client.get("/loom/custom_nodes")).json()
    status = {p["name"]: p["status"] for p in body["packs"]}
    assert status == {"good_pack": "loaded", "routes_pack": "loaded", "runtime_error_pack": "loaded",
                      "raising_pack": "failed", "v3_pack": "loaded", "pip_pack": "loaded"}
    raising = next(p for p in body["packs"] if p["name"] == "raising_pack")
    assert "needs a GPU driver" in raising["error"] and "Traceback" not in raising["traceback"]
    pip = next(p for p in body["packs"] if p["name"] == "pip_pack")
    assert pip["pip_attempts"] and pip["warnings"]
    assert body["summary"] == {"loaded": 5, "failed": 1}
    assert body["import_times"].startswith("Import times for custom nodes:")
    full = await (await client.get("/api/loom/custom_nodes?traceback=1")).json()
    raising = next(p for p in full["packs"] if p["name"] == "raising_pack")
    assert "Traceback" in raising["traceback"]


async def test_pack_routes_object_info_and_extensions(client: Any) -> None:
    for path in ("/routes_pack/hello?name=loom", "/api/routes_pack/hello?name=loom"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.json() == {"hello": "loom"}
    info = await (await client.get("/object_info")).json()
    assert "hijacked" not in info, "a pack route must not replace a core route"
    assert info["GoodAdd"]["python_module"] == "custom_nodes.good_pack"
    assert info["V3ScaleNumber"]["display_name"] == "Scale a number (V3)"
    assert "Explode" in info and "PipNode" in info
    extensions = await (await client.get("/extensions")).json()
    assert "/extensions/good_pack/good.js" in extensions
    js = await client.get("/extensions/good_pack/good.js")
    assert js.status == 200 and "registerExtension" in await js.text()


async def test_runtime_error_fails_only_its_prompt_and_send_sync_reaches_the_client(client: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=tester")
    bad = {"1": {"class_type": "Explode", "inputs": {"value": 1.0}},
           "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}}}
    resp = await client.post("/prompt", json={"prompt": bad, "client_id": "tester"})
    assert resp.status == 200, await resp.text()
    bad_id = (await resp.json())["prompt_id"]
    good = {"1": {"class_type": "Shout", "inputs": {"text": "from a pack"}}}
    resp = await client.post("/prompt", json={"prompt": good, "client_id": "tester"})
    good_id = (await resp.json())["prompt_id"]
    assert (await _history(client, bad_id))["status"]["status_str"] == "error"
    good_entry = await _history(client, good_id)
    assert good_entry["status"]["status_str"] == "success", good_entry["status"]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(m["type"] == "routes_pack.shout" for m in seen):
        msg = await ws.receive(timeout=10)
        if msg.type.name == "TEXT":
            seen.append(msg.json())
    shout = next(m for m in seen if m["type"] == "routes_pack.shout")
    assert shout["data"] == {"text": "from a pack", "node": "1"}
    errors = [m for m in seen if m["type"] == "execution_error"]
    assert errors and "Explode always fails" in errors[0]["data"]["exception_message"]
    await ws.close()
