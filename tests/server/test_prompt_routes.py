"""/prompt, /queue, /interrupt, /free, /history: shapes, ordering, errors."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from server_helpers import graph, wait_history

from app.loom import Loom
from server import create_app


@pytest.fixture
async def paused(aiohttp_client: Any, loom: Loom) -> TestClient:
    """A client whose worker is not started: prompts stay pending."""
    return await aiohttp_client(create_app(loom, web_root=None, start_worker=False))


async def post(client: TestClient, body: Any, path: str = "/prompt") -> tuple[int, Any]:
    resp = await client.post(path, json=body)
    text = await resp.text()
    return resp.status, (await resp.json()) if text else None


async def test_get_prompt_counts_pending(paused: TestClient) -> None:
    assert await (await paused.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
    await post(paused, {"prompt": graph()})
    await post(paused, {"prompt": graph()})
    assert await (await paused.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 2}}


@pytest.mark.parametrize("body, etype", [
    ({}, "no_prompt"),
    ({"prompt": []}, "invalid_prompt"),
    ({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}, "invalid_prompt"),
    ({"prompt": {"1": {"class_type": "Const", "inputs": {}}}}, "prompt_no_outputs"),
])
async def test_prompt_validation_errors(client: TestClient, body: Any, etype: str) -> None:
    status, data = await post(client, body)
    assert status == 400
    assert set(data) == {"error", "node_errors"}
    assert data["error"]["type"] == etype and data["node_errors"] == {}
    assert set(data["error"]) == {"type", "message", "details", "extra_info"}


async def test_prompt_node_errors_shape(client: TestClient) -> None:
    status, data = await post(client, {"prompt": {"9": {"class_type": "Show", "inputs": {}}}})
    assert status == 400
    assert data["error"]["type"] == "prompt_outputs_failed_validation"
    err = data["node_errors"]["9"]
    assert err["class_type"] == "Show" and err["dependent_outputs"] == ["9"]
    assert err["errors"][0]["type"] == "required_input_missing"


@pytest.mark.parametrize("body, key", [
    ({"prompt": {}, "number": "1"}, "number"),
    ({"prompt": {}, "number": True}, "number"),
    ({"prompt": {}, "client_id": ["x"]}, "client_id"),
    ({"prompt": {}, "extra_data": []}, "extra_data"),
    ({"prompt": {}, "extra_data": {"extra_pnginfo": ["workflow"]}}, "extra_data.extra_pnginfo"),
    ({"prompt": {}, "extra_data": {"preview_method": 3}}, "extra_data.preview_method"),
    ({"prompt": {}, "front": "yes"}, "front"),
    ({"prompt": {}, "prompt_id": 5}, "prompt_id"),
    ({"prompt": {}, "partial_execution_targets": "9"}, "partial_execution_targets"),
])
async def test_envelope_types_checked(client: TestClient, body: dict[str, Any], key: str) -> None:
    body["prompt"] = graph()
    status, data = await post(client, body)
    assert status == 400
    assert data["error"]["extra_info"]["key"] == key and key in data["error"]["message"]
    assert await (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"null", b"\xff\xfe"])
async def test_malformed_bodies_are_4xx_json(client: TestClient, raw: bytes) -> None:
    for path in ("/prompt", "/queue", "/history"):
        resp = await client.post(path, data=raw, headers={"Content-Type": "application/json"})
        assert resp.status == 400, (path, raw)
        assert "error" in await resp.json()


async def test_priority_number_and_front(paused: TestClient) -> None:
    _, a = await post(paused, {"prompt": graph(1)})
    _, b = await post(paused, {"prompt": graph(2)})
    _, c = await post(paused, {"prompt": graph(3), "front": True})
    _, d = await post(paused, {"prompt": graph(4), "number": -100})
    _, e = await post(paused, {"prompt": graph(5), "number": 0.5})
    assert (a["number"], b["number"], c["number"], d["number"], e["number"]) == (0, 1, -2, -100, 0.5)
    q = await (await paused.get("/queue")).json()
    assert q["queue_running"] == []
    order = [item[1] for item in sorted(q["queue_pending"], key=lambda i: i[0])]
    assert order == [d["prompt_id"], c["prompt_id"], a["prompt_id"], e["prompt_id"], b["prompt_id"]]
    item = q["queue_pending"][0]
    assert len(item) == 5 and item[4] == ["9"]


async def test_extra_data_client_id_and_sensitive_keys(paused: TestClient) -> None:
    my_id = "0f8e5c1a-3b1d-4c59-9a3e-6d2b7c8e9f01"
    body = {"prompt": graph(), "client_id": "c1", "prompt_id": my_id,
            "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf"}}, "api_key_comfy_org": "SECRET",
                           "auth_token_comfy_org": "SECRET2"}}
    status, data = await post(paused, body)
    assert status == 200 and data["prompt_id"] == my_id
    q = await (await paused.get("/queue")).json()
    extra = q["queue_pending"][0][3]
    assert extra["client_id"] == "c1" and isinstance(extra["create_time"], int)
    assert extra["extra_pnginfo"] == {"workflow": {"id": "wf"}}
    assert "SECRET" not in str(q)
    status, dup = await post(paused, body)
    assert status == 400 and dup["error"]["type"] == "duplicate_prompt_id"


async def test_sensitive_keys_reach_executor_not_history(client: TestClient, loom: Loom) -> None:
    seen: list[dict[str, Any]] = []
    real = loom.executor.execute

    def spy(prompt: Any, pid: str, extra: dict[str, Any], outs: Any, **kw: Any) -> Any:
        seen.append(dict(extra))
        return real(prompt, pid, extra, outs, **kw)

    loom.executor.execute = spy
    _, data = await post(client, {"prompt": graph(), "extra_data": {"api_key_comfy_org": "SECRET"}})
    entry = await wait_history(client, data["prompt_id"])
    assert seen[0]["api_key_comfy_org"] == "SECRET"
    assert "SECRET" not in str(entry)


async def test_partial_execution_targets(client: TestClient) -> None:
    g = graph(3)
    g["8"] = {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    _, data = await post(client, {"prompt": g, "partial_execution_targets": ["8"]})
    entry = await wait_history(client, data["prompt_id"])
    assert entry["prompt"][4] == ["8"] and list(entry["outputs"]) == ["8"]


async def test_queue_delete_and_clear(paused: TestClient) -> None:
    ids = [(await post(paused, {"prompt": graph(i)}))[1]["prompt_id"] for i in range(4)]
    status, _ = await post(paused, {"delete": [ids[1]]}, "/queue")
    assert status == 200
    pending = (await (await paused.get("/queue")).json())["queue_pending"]
    assert sorted(i[1] for i in pending) == sorted([ids[0], ids[2], ids[3]])
    await post(paused, {"clear": True}, "/api/queue")
    assert (await (await paused.get("/queue")).json())["queue_pending"] == []
    status, data = await post(paused, {"delete": "x"}, "/queue")
    assert status == 400 and "error" in data


async def test_interrupt_running_prompt(client: TestClient) -> None:
    _, data = await post(client, {"prompt": graph(sleep=5.0)})
    pid = data["prompt_id"]
    for _ in range(200):
        if (await (await client.get("/queue")).json())["queue_running"]:
            break
        await asyncio.sleep(0.01)
    status, _ = await post(client, {"prompt_id": "someone-else"}, "/interrupt")
    assert status == 200
    await asyncio.sleep(0.1)
    assert (await (await client.get("/queue")).json())["queue_running"][0][1] == pid
    resp = await client.post("/interrupt")  # no body: global interrupt
    assert resp.status == 200
    entry = await wait_history(client, pid, timeout=4)
    assert entry["status"] == {"status_str": "error", "completed": False, "messages": entry["status"]["messages"]}
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    _, again = await post(client, {"prompt": graph(7)})  # the flag is cleared for the next prompt
    assert (await wait_history(client, again["prompt_id"]))["status"]["status_str"] == "success"


async def test_node_error_recorded(client: TestClient) -> None:
    _, data = await post(client, {"prompt": graph(fail=True)})
    entry = await wait_history(client, data["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    err = entry["status"]["messages"][-1]
    assert err[0] == "execution_error" and "fixture failure" in err[1]["exception_message"]


async def test_worker_survives_executor_crash(client: TestClient, loom: Loom) -> None:
    real = loom.executor.execute
    loom.executor.execute = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("executor bug"))
    _, data = await post(client, {"prompt": graph()})
    entry = await wait_history(client, data["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert "executor bug" in entry["status"]["messages"][-1][1]["exception_message"]
    loom.executor.execute = real
    _, data = await post(client, {"prompt": graph(4)})
    assert (await wait_history(client, data["prompt_id"]))["outputs"]["9"] == {"text": ["4"]}
    assert loom.backend.status().alive


async def test_free_flags_reach_executor(client: TestClient, loom: Loom) -> None:
    status, _ = await post(client, {"unload_models": True, "free_memory": True}, "/free")
    assert status == 200
    for _ in range(300):
        if loom.executor.resets:
            break
        await asyncio.sleep(0.01)
    assert loom.executor.resets == 1
    status, data = await post(client, {"free_memory": "yes"}, "/free")
    assert status == 400 and "free_memory" in data["error"]["message"]


async def test_history_paging_delete_clear(client: TestClient) -> None:
    ids = []
    for i in range(5):
        _, data = await post(client, {"prompt": graph(i)})
        await wait_history(client, data["prompt_id"])
        ids.append(data["prompt_id"])
    assert list(await (await client.get("/history")).json()) == ids
    assert list(await (await client.get("/history?max_items=2")).json()) == ids[3:]
    assert list(await (await client.get("/history?max_items=2&offset=1")).json()) == ids[1:3]
    assert list(await (await client.get("/api/history?offset=3")).json()) == ids[3:]
    resp = await client.get("/history?max_items=abc")  # ComfyUI's exact answer (its tests/execution checks it)
    assert resp.status == 400 and await resp.json() == {"error": "max_items must be an integer"}
    resp = await client.get("/history?offset=x")
    assert resp.status == 400 and await resp.json() == {"error": "offset must be an integer"}
    assert await (await client.get("/history/unknown")).json() == {}
    await post(client, {"delete": [ids[0]]}, "/history")
    assert list(await (await client.get("/history")).json()) == ids[1:]
    await post(client, {"clear": True}, "/history")
    assert await (await client.get("/history")).json() == {}
