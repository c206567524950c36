"""The Ray backend end to end: a local Ray instance on 127.0.0.1, two CPU worker actors, the tiny checkpoint.

The tests share one pair of workers (starting actors costs seconds); each test checks only its own prompts.
They wait on websocket events and history, never on fixed sleeps.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster_helpers import ray_loom, txt2img
from PIL import Image

from app.engine_factory import Engine
from app.loom import Loom
from server import create_app

pytestmark = pytest.mark.cluster


class _KeepRunning:
    """The shared backend seen by one test's app: the app's shutdown must not stop the module's workers."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def stop(self, timeout: float = 10.0) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@pytest.fixture(scope="module")
def shared(ray_cluster: Any, loom_base: Path, registry: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Loom]:
    loom = ray_loom(loom_base, tmp_path_factory.mktemp("run"), registry, preview_method="latent2rgb")
    loom.backend.start()
    loom.backend.wait_ready(240)
    yield loom
    loom.backend.stop()
    loom.queue.close()


@pytest.fixture
async def client(aiohttp_client: Any, shared: Loom) -> Any:
    view = Loom(config=shared.config, engine=Engine(shared.registry, None), validate_fn=shared.validate_fn,
                interrupt_flag=shared.interrupt_flag, hub=shared.hub, store=shared.store,
                worker=_KeepRunning(shared.backend))  # type: ignore[arg-type]
    return await aiohttp_client(create_app(view, web_root=None, load_custom_nodes=False))


async def post(client: Any, prompt: dict[str, Any], client_id: str, **extra: Any) -> str:
    resp = await client.post("/prompt", json={"prompt": prompt, "client_id": client_id, **extra})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["prompt_id"])


async def frames_until(ws: Any, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 150.0
                       ) -> list[dict[str, Any]]:
    """JSON frames (binary ones as {"binary": bytes}) until `done(frames)`."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s; last frames {[f.get('type') for f in frames[-8:]]}")
        msg = await ws.receive(timeout=left)
        frames.append({"binary": msg.data} if isinstance(msg.data, bytes) else json.loads(msg.data))
    return frames


def finished(ids: list[str]) -> Callable[[list[dict[str, Any]]], bool]:
    """True once every prompt in `ids` got its final `executing {node: null}`."""
    want = set(ids)

    def check(frames: list[dict[str, Any]]) -> bool:
        return want <= {f["data"]["prompt_id"] for f in frames if f.get("type") == "executing"
                        and f["data"].get("node") is None}
    return check


def shape(event: str, data: Any) -> tuple[str, Any]:
    """An event as (type, node id / cached node list / progress_state per-node states)."""
    if not isinstance(data, dict):
        return (event, None)
    nodes = data.get("nodes")
    if isinstance(nodes, dict):
        return (event, sorted((k, v.get("state"), v.get("value"), v.get("max")) for k, v in nodes.items()))
    return (event, data.get("node", nodes))


def of_prompt(frames: list[dict[str, Any]], pid: str) -> list[tuple[str, Any]]:
    return [shape(f["type"], f["data"]) for f in frames
            if isinstance(f.get("data"), dict) and f["data"].get("prompt_id") == pid]


def local_frames(registry_executor: Any, prompt: dict[str, Any], pid: str) -> list[tuple[str, Any]]:
    """The same prompt on this machine's executor through HubSink: the (type, node) frames a client gets."""
    from app.events import HubSink

    sent: list[tuple[str, Any]] = []

    class Rec:
        def send(self, event: str, data: Any, sid: str | None = None) -> None:
            sent.append(shape(event, data))

        def send_preview(self, *a: Any) -> None:
            pass

    registry_executor.execute(prompt, pid, {"client_id": "x"}, ["9"], sink=HubSink(Rec(), pid, "x", "none", 512),
                              interrupt=_Flag())
    return [*sent, ("executing", None)]


class _Flag:
    def is_set(self) -> bool:
        return False

    def set(self) -> None: ...
    def clear(self) -> None: ...


async def test_ten_prompts_finish_on_both_workers_in_order(client: Any, shared: Loom, engine: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=ten")
    ids = [await post(client, txt2img(100 + i), "ten") for i in range(10)]
    frames = await frames_until(ws, finished(ids))
    history = (await (await client.get("/history")).json())
    workers = {shared.queue.worker_of(pid) for pid in ids}
    assert workers == {s.name for s in shared.backend.slots}, workers
    names = set()
    for pid in ids:
        entry = history[pid]
        assert entry["status"]["status_str"] == "success", entry["status"]
        image = entry["outputs"]["9"]["images"][0]
        names.add(image["filename"])
        view = await client.get("/view", params={"filename": image["filename"], "type": "output"})
        assert view.status == 200

        png = Image.open(io.BytesIO(await view.read()))
        assert json.loads(png.info["prompt"]) == entry["prompt"][2]  # PNG metadata as on one machine
        seq = of_prompt(frames, pid)
        kinds = [t for t, _ in seq]
        assert kinds[0] == "execution_start" and seq[-1] == ("executing", None), kinds
        assert kinds.index("executed") < kinds.index("execution_success") < len(kinds) - 1
        executed = [f for f in frames if f.get("type") == "executed" and f["data"]["prompt_id"] == pid]
        assert executed[0]["data"]["output"]["images"][0] == image  # the event names the placed file
    assert len(names) == 10
    assert (await (await client.get("/queue")).json()) == {"queue_running": [], "queue_pending": []}
    # Same frames, in the same order, as this machine's executor sends for the same uncached prompt.
    from executor import validate_prompt

    fresh = txt2img(999, prefix="local")
    fresh["6"]["inputs"]["text"] = "compared with one machine"
    local_frames(engine.executor, validate_prompt(engine.registry, txt2img(998)).prompt, "W")  # warm: loader cached
    local = local_frames(engine.executor, validate_prompt(engine.registry, fresh).prompt, "L")
    pid = await post(client, fresh, "ten")
    frames = await frames_until(ws, finished([pid]))
    assert of_prompt(frames, pid) == local
    await ws.close()


async def test_interrupt_and_delete(client: Any, shared: Loom, ray_cluster: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=intr")
    a = await post(client, txt2img(1, steps=400), "intr")
    b = await post(client, txt2img(2, steps=400), "intr")

    def progressing(frames: list[dict[str, Any]]) -> bool:
        started = {f["data"].get("prompt_id") for f in frames if f.get("type") == "progress"}
        return {a, b} <= started
    await frames_until(ws, progressing)
    assert {shared.queue.worker_of(a), shared.queue.worker_of(b)} == {s.name for s in shared.backend.slots}
    c = await post(client, txt2img(3), "intr")  # both workers busy: c stays pending
    assert (await client.post("/queue", json={"delete": [c]})).status == 200
    assert (await client.post("/interrupt", json={"prompt_id": a})).status == 200
    assert (await client.post("/interrupt", json={"prompt_id": b})).status == 200
    d = await post(client, txt2img(4), "intr")
    frames = await frames_until(ws, finished([a, b, d]))
    history = await (await client.get("/history")).json()
    for pid in (a, b):
        kinds = [t for t, _ in of_prompt(frames, pid)]
        assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds
        assert history[pid]["status"]["completed"] is False
    assert history[d]["status"]["status_str"] == "success"
    assert c not in history and not of_prompt(frames, c)
    ran = [pid for s in shared.backend.slots for pid in ray_cluster.get(s.actor.ran.remote())]
    assert c not in ran and d in ran
    await ws.close()


async def test_seed_only_rerun_goes_to_the_worker_that_cached_it(client: Any, shared: Loom) -> None:
    ws = await client.ws_connect("/ws?clientId=seed")
    first = txt2img(5)
    first["6"]["inputs"]["text"] = "a prompt only one worker has seen"
    p1 = await post(client, first, "seed")
    await frames_until(ws, finished([p1]))
    again = json.loads(json.dumps(first))
    again["3"]["inputs"]["seed"] = 6
    p2 = await post(client, again, "seed")
    await frames_until(ws, finished([p2]))
    assert shared.queue.worker_of(p2) == shared.queue.worker_of(p1)
    entry = (await (await client.get(f"/history/{p2}")).json())[p2]
    cached = [m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached"][0]
    assert {"4", "5", "6", "7"} <= set(cached)
    # The very same prompt again: all cached on that worker; the replayed ui names the file the server has.
    p3 = await post(client, again, "seed")
    frames = await frames_until(ws, finished([p3]))
    h = await (await client.get("/history")).json()
    assert h[p3]["outputs"] == h[p2]["outputs"]
    replayed = [f["data"]["output"] for f in frames if f.get("type") == "executed" and f["data"]["prompt_id"] == p3]
    assert replayed == [h[p2]["outputs"]["9"]]
    img = h[p2]["outputs"]["9"]["images"][0]
    view = await client.get("/view", params={"filename": img["filename"], "type": "output"})
    assert view.status == 200 and Image.open(io.BytesIO(await view.read())).size == (64, 64)
    stats = shared.backend.worker_stats()
    assert len(stats) == 2 and all(s["device"] == "cpu" and s["prompts_done"] >= 1 for s in stats)
    assert any(m["name"].startswith("tiny-sd15") for s in stats for m in s["loaded_models"])
    # POST /free reaches every worker: they forget their checkpoints (and routing forgets what they held).
    assert (await client.post("/free", json={"unload_models": True, "free_memory": True})).status == 200
    deadline = time.monotonic() + 30
    while any(s["loaded_models"] for s in shared.backend.worker_stats()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert all(s["loaded_models"] == [] and s["models_used"] == [] for s in shared.backend.worker_stats())
    await ws.close()


async def test_previews_stream_from_the_worker_between_progress_events(client: Any, shared: Loom) -> None:
    ws = await client.ws_connect("/ws?clientId=prev")
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    pid = await post(client, txt2img(11, steps=3), "prev")  # the workers run with --preview-method latent2rgb
    frames = await frames_until(ws, finished([pid]))
    order = []
    for f in frames:
        if "binary" in f:
            kind, size = struct.unpack(">II", f["binary"][:8])
            assert kind == 4  # PREVIEW_IMAGE_WITH_METADATA: this client asked for it
            meta = json.loads(f["binary"][8:8 + size])
            assert meta["prompt_id"] == pid and meta["node_id"] == "3" and meta["image_type"] == "image/jpeg"
            assert Image.open(io.BytesIO(f["binary"][8 + size:])).format == "JPEG"
            order.append("preview")
        elif isinstance(f.get("data"), dict) and f["data"].get("prompt_id") == pid and f["type"] in (
                "progress", "executed"):
            order.append(f["type"])
    assert order.count("preview") == 3 and order.count("progress") == 3, order
    assert order.index("preview") < order.index("executed")
    await ws.close()


def test_workers_load_custom_node_packs(shared: Loom, ray_cluster: Any) -> None:
    from app.queue_store import QueueItem

    infos = [ray_cluster.get(s.actor.info.remote()) for s in shared.backend.slots]
    assert all("cluster_echo" in " ".join(i["custom_node_packs"]) for i in infos), infos
    item = QueueItem(-50, "echo-1", {"1": {"class_type": "ClusterEcho", "inputs": {"text": "from a pack"}}}, {}, ["1"])
    shared.queue.enqueue(item)  # straight into the queue: the server's registry does not have the pack
    shared.backend.submit(item)
    deadline = time.monotonic() + 60
    while shared.queue.history_entry("echo-1") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    entry = shared.queue.history_entry("echo-1")
    assert entry is not None and entry["status"]["status_str"] == "success", entry
    text, pid = entry["outputs"]["1"]["text"]
    assert text == "from a pack" and int(pid) in {i["pid"] for i in infos}


async def test_batch_split_across_workers_matches_one_worker(client: Any, shared: Loom) -> None:
    ws = await client.ws_connect("/ws?clientId=split")
    prompt = txt2img(21, steps=3, batch=4, prefix="split")
    shared.backend.split_batches = False
    try:
        whole = await post(client, prompt, "split")
        await frames_until(ws, finished([whole]))
    finally:
        shared.backend.split_batches = True
    parted = await post(client, prompt, "split")
    frames = await frames_until(ws, finished([parted]))
    assert "+" in (shared.queue.worker_of(parted) or "") and "+" not in (shared.queue.worker_of(whole) or "+")
    kinds = [t for t, _ in of_prompt(frames, parted)]
    assert kinds.count("executed") == 1 and kinds.count("execution_success") == 1 and kinds[-1] == "executing"
    assert kinds.count("execution_start") == 1
    h = await (await client.get("/history")).json()
    a, b = h[whole]["outputs"]["9"]["images"], h[parted]["outputs"]["9"]["images"]
    assert len(a) == len(b) == 4 and len({i["filename"] for i in a + b}) == 8
    executed = [f["data"]["output"] for f in frames if f.get("type") == "executed" and f["data"]["prompt_id"] == parted]
    assert executed == [h[parted]["outputs"]["9"]]
    for x, y in zip(a, b, strict=True):  # same pixels, same metadata, in batch order
        bx = await (await client.get("/view", params={"filename": x["filename"], "type": "output"})).read()
        by = await (await client.get("/view", params={"filename": y["filename"], "type": "output"})).read()
        ix, iy = Image.open(io.BytesIO(bx)), Image.open(io.BytesIO(by))
        diff = np.abs(np.asarray(ix, dtype=np.int16) - np.asarray(iy, dtype=np.int16)).max()
        assert diff <= 2  # the fixtures' rule; a batch of 2 and of 4 may round float32 sums differently
        assert json.loads(iy.info["prompt"]) == json.loads(ix.info["prompt"]) == h[parted]["prompt"][2]
    await ws.close()


async def _running_slot(shared: Loom, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for slot in list(shared.backend.slots):
            if slot.running is not None and slot.info.get("pid") and shared.queue.started_at(
                    slot.running.prompt_id) is not None:
                return slot
        await asyncio.sleep(0.05)
    raise AssertionError("no worker started a prompt")


async def test_killed_worker_prompt_requeued_none_lost_none_twice(client: Any, shared: Loom,
                                                                 ray_cluster: Any) -> None:
    ws = await client.ws_connect("/ws?clientId=kill")
    ids = [await post(client, txt2img(200 + i, steps=20), "kill") for i in range(10)]
    victim = await _running_slot(shared)
    victim_prompt = victim.running.prompt_id
    os.kill(victim.info["pid"], signal.SIGKILL)
    frames = await frames_until(ws, finished(ids), timeout=200)
    history = await (await client.get("/history")).json()
    assert all(history[pid]["status"]["status_str"] == "success" for pid in ids)
    for pid in ids:  # exactly one success (and one final executing) per prompt on the wire
        kinds = [t for t, _ in of_prompt(frames, pid)]
        assert kinds.count("execution_success") == 1 and kinds.count("execution_error") == 0, kinds
    assert shared.queue.worker_of(victim_prompt) != victim.name
    names = [s.name for s in shared.backend.slots]
    assert victim.name not in names and len(names) == 2  # a replacement took its place
    ran = [pid for s in shared.backend.slots for pid in ray_cluster.get(s.actor.ran.remote()) if pid in ids]
    assert len(ran) == len(set(ran))  # none of these ran to the end twice on the live workers
    await ws.close()


async def test_retry_limit_reports_the_worker(client: Any, shared: Loom) -> None:
    shared.backend.retries = 0
    try:
        ws = await client.ws_connect("/ws?clientId=lim")
        pid = await post(client, txt2img(300, steps=400), "lim")
        victim = await _running_slot(shared)
        os.kill(victim.info["pid"], signal.SIGKILL)
        frames = await frames_until(ws, finished([pid]))
        err = [f["data"] for f in frames if f.get("type") == "execution_error" and f["data"]["prompt_id"] == pid]
        assert len(err) == 1 and victim.name in err[0]["exception_message"], err
        entry = (await (await client.get(f"/history/{pid}")).json())[pid]
        assert entry["status"]["status_str"] == "error"
        await ws.close()
    finally:
        shared.backend.retries = 2


def test_restart_with_cluster_alive_resumes_queue(shared: Loom, registry: Any, loom_base: Path) -> None:
    from app.queue_store import QueueItem
    from executor import validate_prompt

    shared.backend.stop()  # the old server is gone; Ray (the cluster) stays up
    run_dir = shared.config.user_dir.parent
    store = shared.queue
    ids = []
    for i in range(3):
        valid = validate_prompt(registry, txt2img(400 + i))
        item = QueueItem(1000 + i, f"restart-{i}", valid.prompt, {}, list(valid.outputs))
        store.enqueue(item)
        ids.append(item.prompt_id)
    claimed = store.claim_next()  # the prompt the old server was running when it died
    assert claimed is not None and claimed[0].prompt_id == ids[0]
    loom = ray_loom(loom_base, run_dir, registry)  # reopens loom.db: running -> front of the queue
    try:
        assert [i.prompt_id for i in loom.queue.pending()] == ids
        loom.backend.start()
        loom.backend.wait_ready(240)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not all(loom.queue.history_entry(p) for p in ids):
            time.sleep(0.1)
        assert all(loom.queue.history_entry(p)["status"]["status_str"] == "success" for p in ids)
        assert loom.queue.pending() == [] and loom.queue.running() == []
    finally:
        loom.backend.stop()
        loom.queue.close()
