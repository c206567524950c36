"""Websocket: session, reconnect, feature flags, addressing rule, previews, thread-safe hub."""
from __future__ import annotations

import asyncio
import json
import struct
import threading
from typing import Any

from aiohttp import WSMsgType
from server_helpers import graph, wait_history, ws_until

from app.loom import Loom
from server import create_app


def is_done(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "executing" and frame["data"].get("node") is None


async def test_sid_invented_and_api_path(client: Any) -> None:
    ws = await client.ws_connect("/api/ws")
    first = await ws.receive_json()
    assert first["type"] == "status" and len(first["data"]["sid"]) == 32
    await ws.close()


async def test_reconnect_replaces_old_socket(client: Any, loom: Loom) -> None:
    old = await client.ws_connect("/ws?clientId=same")
    await old.receive_json()
    new = await client.ws_connect("/ws?clientId=same")
    await new.receive_json()
    msg = await old.receive(timeout=2)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    loom.hub.send("custom_event", {"x": 1}, "same")
    assert await new.receive_json(timeout=2) == {"type": "custom_event", "data": {"x": 1}}
    assert loom.hub.sids() == ["same"]
    await new.close()


async def test_feature_flags_exchange(client: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=f")
    await ws.receive_json()
    await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    reply = await ws.receive_json(timeout=2)
    features = await (await client.get("/features")).json()
    assert reply == {"type": "feature_flags", "data": features}
    assert features["supports_preview_metadata"] is True and features["max_upload_size"] == 100 * 1024 * 1024
    await ws.close()


async def test_events_without_client_id(client: Any) -> None:
    """executing/executed/... are not sent; status and the final executing(null) are broadcast."""
    watcher = await client.ws_connect("/ws?clientId=watcher")
    await watcher.receive_json()
    resp = await client.post("/prompt", json={"prompt": graph(2)})
    pid = (await resp.json())["prompt_id"]
    frames = await ws_until(watcher, is_done)
    assert {f["type"] for f in frames} == {"status", "executing"}
    assert frames[-1]["data"] == {"node": None, "prompt_id": pid}
    await watcher.close()


async def test_events_go_only_to_owner(client: Any, loom: Loom) -> None:
    owner = await client.ws_connect("/ws?clientId=owner")
    other = await client.ws_connect("/ws?clientId=other")
    await owner.receive_json()
    await other.receive_json()
    await client.post("/prompt", json={"prompt": graph(2), "client_id": "owner"})
    owner_frames = await ws_until(owner, is_done)
    other_frames = await ws_until(other, lambda f: f["type"] == "status"
                                  and f["data"]["status"]["exec_info"]["queue_remaining"] == 0)
    assert "executed" in [f["type"] for f in owner_frames]
    assert {f["type"] for f in other_frames} == {"status"}
    loom.hub.send("probe", {}, "other")  # nothing else was queued for `other` before this
    assert (await other.receive_json(timeout=2))["type"] == "probe"
    executed = next(f for f in owner_frames if f["type"] == "executed")
    assert executed["data"]["output"] == {"text": ["2"]} and executed["data"]["node"] == "9"


async def test_interrupted_is_broadcast_and_history_first(client: Any) -> None:
    watcher = await client.ws_connect("/ws?clientId=w2")
    await watcher.receive_json()
    resp = await client.post("/prompt", json={"prompt": graph(sleep=5.0)})
    pid = (await resp.json())["prompt_id"]
    await asyncio.sleep(0.2)
    await client.post("/interrupt", json={"prompt_id": pid})
    frames = await ws_until(watcher, is_done)
    assert "execution_interrupted" in [f["type"] for f in frames]
    # executing(null) means the history entry is already there
    assert pid in await (await client.get(f"/history/{pid}")).json()


async def _preview_frames(aiohttp_client: Any, loom: Loom, flags: dict[str, Any] | None,
                          extra: dict[str, Any] | None = None) -> list[bytes]:
    c = await aiohttp_client(create_app(loom, web_root=None))
    ws = await c.ws_connect("/ws?clientId=p")
    await ws.receive_json()
    if flags is not None:
        await ws.send_str(json.dumps({"type": "feature_flags", "data": flags}))
        await ws.receive_json()
    g = {"1": {"class_type": "Const", "inputs": {"value": 1}},
         "9": {"class_type": "PreviewRed", "inputs": {"value": ["1", 0]}}}
    await c.post("/prompt", json={"prompt": g, "client_id": "p", "extra_data": extra or {}})
    frames = await ws_until(ws, is_done)
    return [f["binary"] for f in frames if "binary" in f]


async def test_no_preview_frames_when_method_none(aiohttp_client: Any, loom: Loom) -> None:
    assert await _preview_frames(aiohttp_client, loom, None) == []


async def test_preview_type1_jpeg(aiohttp_client: Any, make_loom: Any) -> None:
    from io import BytesIO

    from PIL import Image

    frames = await _preview_frames(aiohttp_client, make_loom(preview_method="auto", preview_size=128), None)
    assert len(frames) == 1
    event, fmt = struct.unpack(">II", frames[0][:8])
    assert (event, fmt) == (1, 1)
    img = Image.open(BytesIO(frames[0][8:]))
    assert img.format == "JPEG" and img.size == (128, 64)


async def test_preview_type4_with_metadata(aiohttp_client: Any, make_loom: Any) -> None:
    frames = await _preview_frames(aiohttp_client, make_loom(preview_method="latent2rgb"),
                                   {"supports_preview_metadata": True})
    event, n = struct.unpack(">II", frames[0][:8])
    meta = json.loads(frames[0][8:8 + n])
    assert event == 4
    assert meta["node_id"] == "9" and meta["image_type"] == "image/jpeg" and meta["prompt_id"]
    assert frames[0][8 + n:8 + n + 2] == b"\xff\xd8"


async def test_preview_method_per_prompt_override(aiohttp_client: Any, loom: Loom) -> None:
    frames = await _preview_frames(aiohttp_client, loom, None, {"preview_method": "auto"})
    assert len(frames) == 1


async def test_hub_send_from_threads_keeps_order(client: Any, loom: Loom) -> None:
    ws = await client.ws_connect("/ws?clientId=t")
    await ws.receive_json()

    def burst() -> None:
        for i in range(200):
            loom.hub.send("tick", {"i": i}, "t")

    th = threading.Thread(target=burst)
    th.start()
    th.join()
    got = [(await ws.receive_json(timeout=5))["data"]["i"] for _ in range(200)]
    assert got == list(range(200))
    loom.hub.send_bytes(3, b"\x00\x00\x00\x019hello", "t")
    msg = await ws.receive(timeout=2)
    assert msg.data[:4] == b"\x00\x00\x00\x03" and msg.data.endswith(b"hello")


async def test_prompt_server_shim_send_sync(client: Any) -> None:
    from server import PromptServer

    ws = await client.ws_connect("/ws?clientId=ps")
    await ws.receive_json()
    PromptServer.instance.send_sync("my.pack.event", {"ok": True}, "ps")
    assert await ws.receive_json(timeout=2) == {"type": "my.pack.event", "data": {"ok": True}}


async def test_status_broadcast_on_queue_change(client: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=s")
    await ws.receive_json()
    resp = await client.post("/prompt", json={"prompt": graph(1)})
    await wait_history(client, (await resp.json())["prompt_id"])
    frames = await ws_until(ws, is_done)
    statuses = [f["data"]["status"]["exec_info"]["queue_remaining"] for f in frames if f["type"] == "status"]
    assert statuses[0] == 1 and statuses[-1] == 0


async def test_reconnect_replays_executing_node(client: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=rc")
    await ws.receive_json()
    resp = await client.post("/prompt", json={"prompt": graph(1, sleep=1.0), "client_id": "rc"})
    pid = (await resp.json())["prompt_id"]
    await ws_until(ws, lambda f: f.get("type") == "executing" and f["data"].get("node") == "2")
    again = await client.ws_connect("/ws?clientId=rc")
    assert (await again.receive_json())["type"] == "status"
    assert await again.receive_json(timeout=2) == {"type": "executing", "data": {"node": "2"}}
    await client.post("/interrupt", json={"prompt_id": pid})
    await again.close()


async def test_on_prompt_handler_rewrites_body(client: Any) -> None:
    from server import PromptServer

    def double(body: dict[str, Any]) -> dict[str, Any]:
        body["prompt"]["1"]["inputs"]["value"] *= 2
        return body

    PromptServer.instance.add_on_prompt_handler(double)
    resp = await client.post("/prompt", json={"prompt": graph(21)})
    entry = await wait_history(client, (await resp.json())["prompt_id"])
    assert entry["outputs"]["9"] == {"text": ["42"]}


async def test_logs_pushed_to_subscribers(client: Any) -> None:
    import logging

    ws = await client.ws_connect("/ws?clientId=lg")
    await ws.receive_json()
    resp = await client.patch("/internal/logs/subscribe", json={"clientId": "lg", "enabled": True})
    assert resp.status == 200
    logging.getLogger("loom.test").warning("hello from the test")
    frame = await ws.receive_json(timeout=2)
    assert frame["type"] == "logs" and "hello from the test" in frame["data"]["entries"][0]["m"]
    assert "hello from the test" in await (await client.get("/internal/logs")).json()
