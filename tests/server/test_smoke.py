"""Core loop: POST /prompt -> worker -> /history, /queue, /object_info, /ws events."""
from __future__ import annotations

from typing import Any

from server_helpers import graph, wait_history, ws_until


async def test_prompt_runs_to_history(client: Any) -> None:
    resp = await client.post("/prompt", json={"prompt": graph(5)})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"prompt_id", "number", "node_errors"}
    entry = await wait_history(client, body["prompt_id"])
    assert entry["outputs"] == {"9": {"text": ["5"]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached",
                                                           "execution_success"]
    assert entry["prompt"][1] == body["prompt_id"] and entry["prompt"][4] == ["9"]
    assert entry["meta"]["9"]["node_id"] == "9"


async def test_api_prefix_and_object_info(client: Any) -> None:
    for path in ("/object_info", "/api/object_info"):
        data = await (await client.get(path)).json()
        assert data["Const"]["input"]["required"]["value"][0] == "INT"
    assert await (await client.get("/api/object_info/Nope")).json() == {}
    assert "Show" in await (await client.get("/object_info/Show")).json()


async def test_ws_event_order(client: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=abc")
    first = await ws.receive_json()
    assert first == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"}}
    resp = await client.post("/api/prompt", json={"prompt": graph(1), "client_id": "abc"})
    pid = (await resp.json())["prompt_id"]
    frames = await ws_until(ws, lambda f: f["type"] == "executing" and f["data"]["node"] is None)
    types = [f["type"] for f in frames]
    assert types[-2:] == ["status", "executing"]
    assert types.index("execution_start") < types.index("execution_cached") < types.index("executed") \
        < types.index("execution_success") < len(types) - 2
    assert frames[-1]["data"] == {"node": None, "prompt_id": pid}
    await ws.close()
