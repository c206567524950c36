"""The jobs API against ComfyUI's recorded shapes (ComfyUI `comfy_execution/jobs.py`, `server.py`,
`tests/execution/test_jobs.py`, and the cancel-route tests), on Loom's SQLite store."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from server_helpers import graph, wait_history

from app.job_records import summarise_history
from app.loom import Loom
from app.queue_store import QueueStore
from server import create_app

LoomFactory = Callable[..., Loom]

# The queue panel of ComfyUI's frontend (1.58) asks exactly this.
FRONTEND_HISTORY_QUERY = "/api/jobs?status=completed,failed,cancelled&limit=64&offset=0"
FRONTEND_QUEUE_QUERY = "/api/jobs?status=in_progress,pending&limit=200&offset=0"

# Keys a job carries in ComfyUI's list (None-valued ones are left out, as ComfyUI's prune_dict does).
LIST_KEYS = {"id", "status", "priority", "create_time", "execution_start_time", "execution_end_time",
             "execution_error", "outputs_count", "previewable_outputs_count", "preview_output", "workflow_id"}


async def _post(client: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/prompt", json=body)
    return resp.status, await resp.json()


async def _queue(client: TestClient, **kw: Any) -> str:
    status, data = await _post(client, {"prompt": graph(**kw)})
    assert status == 200, data
    return str(data["prompt_id"])


@pytest.fixture
async def paused(aiohttp_client: Any, make_loom: LoomFactory) -> TestClient:
    return await aiohttp_client(create_app(make_loom(), web_root=None, start_worker=False))


async def _wait_status(client: TestClient, job_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await client.get(f"/api/jobs/{job_id}")
        if resp.status == 200:
            job = await resp.json()
            if job["status"] == status:
                return dict(job)
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {status}")


async def test_frontend_queries_answer_every_status(client: TestClient) -> None:
    ok = (await _post(client, {"prompt": graph(1), "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}}))[1]
    bad = await _queue(client, fail=True)
    await wait_history(client, ok["prompt_id"])
    await wait_history(client, bad)
    resp = await client.get(FRONTEND_HISTORY_QUERY)
    assert resp.status == 200
    data = await resp.json()
    assert {j["id"]: j["status"] for j in data["jobs"]} == {ok["prompt_id"]: "completed", bad: "failed"}
    assert data["pagination"] == {"offset": 0, "limit": 64, "total": 2, "has_more": False}
    for job in data["jobs"]:
        assert set(job) <= LIST_KEYS and {"id", "status", "priority", "create_time", "outputs_count"} <= set(job)
        assert isinstance(job["create_time"], int) and job["execution_end_time"] >= job["execution_start_time"]
    done = next(j for j in data["jobs"] if j["status"] == "completed")
    # a text output is not a file: ComfyUI counts only file items (and 3D file names)
    assert done["workflow_id"] == "wf-1" and done["outputs_count"] == 0 and done["priority"] == ok["number"]
    failed = next(j for j in data["jobs"] if j["status"] == "failed")
    assert failed["execution_error"]["exception_message"] and "preview_output" not in failed
    resp = await client.get(FRONTEND_QUEUE_QUERY)
    assert resp.status == 200 and (await resp.json())["jobs"] == []


async def test_pending_and_running_listed_like_comfyui(paused: TestClient) -> None:
    ids = []
    for i in range(3):
        ids.append(await _queue(paused, value=i))
        await asyncio.sleep(0.003)  # create_time has millisecond resolution
    data = await (await paused.get("/api/jobs?status=pending")).json()
    assert [j["id"] for j in data["jobs"]] == ids[::-1]  # newest first (create_time desc)
    job = data["jobs"][0]
    assert set(job) == {"id", "status", "priority", "create_time", "outputs_count"}
    assert job["status"] == "pending" and job["outputs_count"] == 0
    assert (await (await paused.get("/api/jobs?status=pending&sort_order=asc")).json())["jobs"][0]["id"] == ids[0]
    single = await (await paused.get(f"/api/jobs/{ids[1]}")).json()
    assert single["status"] == "pending" and single["id"] == ids[1]


@pytest.mark.parametrize("query, message", [
    ("status=weird", "Invalid status value(s): weird"),
    ("status=completed,bogus", "Invalid status value(s): bogus"),
    ("sort_by=name", "sort_by must be"),
    ("sort_order=up", "sort_order must be"),
    ("limit=0", "limit must be a positive integer"),
    ("limit=x", "limit must be an integer"),
    ("offset=y", "offset must be an integer"),
])
async def test_bad_queries_answer_comfyui_error_shape(client: TestClient, query: str, message: str) -> None:
    resp = await client.get(f"/api/jobs?{query}")
    body = await resp.json()
    assert resp.status == 400 and set(body) == {"error"} and message in body["error"]


async def test_status_values_are_case_insensitive_and_offset_clamps(client: TestClient) -> None:
    resp = await client.get("/api/jobs?status=COMPLETED,%20Cancelled&offset=-5&sort_by=Execution_Duration")
    assert resp.status == 200
    assert (await resp.json())["pagination"]["offset"] == 0


async def test_paging_sorting_and_workflow_filter(client: TestClient) -> None:
    ids = []
    for i in range(5):
        wf = {"extra_pnginfo": {"workflow": {"id": "even" if i % 2 == 0 else "odd"}}}
        ids.append((await _post(client, {"prompt": graph(i), "extra_data": wf}))[1]["prompt_id"])
        await wait_history(client, ids[-1])
        await asyncio.sleep(0.003)
    page = await (await client.get("/api/jobs?limit=2&offset=1")).json()
    assert [j["id"] for j in page["jobs"]] == [ids[3], ids[2]]
    assert page["pagination"] == {"offset": 1, "limit": 2, "total": 5, "has_more": True}
    last = await (await client.get("/api/jobs?limit=2&offset=4")).json()
    assert [j["id"] for j in last["jobs"]] == [ids[0]] and last["pagination"]["has_more"] is False
    even = await (await client.get("/api/jobs?workflow_id=even&sort_order=asc")).json()
    assert [j["id"] for j in even["jobs"]] == [ids[0], ids[2], ids[4]] and even["pagination"]["total"] == 3
    by_duration = await (await client.get("/api/jobs?sort_by=execution_duration")).json()
    durations = [j["execution_end_time"] - j["execution_start_time"] for j in by_duration["jobs"]]
    assert durations == sorted(durations, reverse=True)


async def test_get_job_detail_shape(client: TestClient) -> None:
    pid = await _queue(client, value=7)
    await wait_history(client, pid)
    job = await (await client.get(f"/api/jobs/{pid}")).json()
    assert {"outputs", "execution_status", "workflow"} <= set(job)
    assert job["outputs"] == {"9": {"text": ["7"]}} and job["workflow"]["prompt"] == graph(value=7)
    assert job["execution_status"]["status_str"] == "success" and "create_time" in job["workflow"]["extra_data"]
    again = await (await client.get(f"/api/api/jobs/{pid}")).json()  # declared with /api, so also /api/api
    assert again == job
    resp = await client.get("/api/jobs/nope")
    assert resp.status == 404 and await resp.json() == {"error": "Job not found"}


async def test_cancel_pending_dequeues_and_is_idempotent(paused: TestClient) -> None:
    a, b = await _queue(paused), await _queue(paused)
    resp = await paused.post(f"/api/jobs/{a}/cancel")
    assert resp.status == 200 and await resp.json() == {"cancelled": True}
    assert [j["id"] for j in (await (await paused.get("/api/jobs")).json())["jobs"]] == [b]
    assert await (await paused.post(f"/api/jobs/{a}/cancel")).json() == {"cancelled": False}
    assert await (await paused.post("/api/jobs/does-not-exist/cancel")).json() == {"cancelled": False}
    assert await (await paused.get("/prompt")).json() == {"exec_info": {"queue_remaining": 1}}


async def test_cancel_running_interrupts_and_lists_cancelled(client: TestClient) -> None:
    slow = await _queue(client, sleep=5.0)
    await _wait_status(client, slow, "in_progress")
    assert await (await client.post(f"/api/jobs/{slow}/cancel")).json() == {"cancelled": True}
    job = await _wait_status(client, slow, "cancelled")
    assert "execution_error" not in job and job["execution_status"]["status_str"] == "error"
    listed = await (await client.get(FRONTEND_HISTORY_QUERY)).json()
    assert [(j["id"], j["status"]) for j in listed["jobs"]] == [(slow, "cancelled")]
    only_failed = await (await client.get("/api/jobs?status=failed")).json()
    assert only_failed["jobs"] == []
    assert await (await client.post(f"/api/jobs/{slow}/cancel")).json() == {"cancelled": False}


async def test_batch_cancel_contract(paused: TestClient) -> None:
    a, b = await _queue(paused), await _queue(paused)
    missing = str(uuid.uuid4())
    resp = await paused.post("/api/jobs/cancel", json={"job_ids": [a, missing, b]})
    assert resp.status == 404 and (await resp.json())["unknown_ids"] == [missing]
    assert len((await (await paused.get("/api/jobs")).json())["jobs"]) == 2  # fail-fast: nothing cancelled
    for body, key in (({"job_ids": [{}]}, "invalid_ids"), ({"job_ids": ["not-a-uuid"]}, "invalid_ids"),
                      ({}, None), ({"job_ids": "x"}, None)):
        resp = await paused.post("/api/jobs/cancel", json=body)
        assert resp.status == 400 and "error" in (data := await resp.json())
        assert key is None or key in data
    assert (await paused.post("/api/jobs/cancel", data=b"{")).status == 400
    resp = await paused.post("/api/jobs/cancel", json={"job_ids": [a, b]})
    assert await resp.json() == {"cancelled": True}
    assert (await (await paused.get("/api/jobs")).json())["jobs"] == []


async def test_jobs_survive_restart(aiohttp_client: Any, make_loom: LoomFactory) -> None:
    first = make_loom()
    client = await aiohttp_client(create_app(first, web_root=None))
    done = await _queue(client, value=3)
    failed = await _queue(client, fail=True)
    await wait_history(client, done)
    await wait_history(client, failed)
    before = await (await client.get("/api/jobs")).json()
    await client.close()
    first.close()

    second = make_loom()
    client = await aiohttp_client(create_app(second, web_root=None, start_worker=False))
    pending = await _queue(client)
    after = await (await client.get("/api/jobs")).json()
    assert after["jobs"][1:] == before["jobs"] and after["jobs"][0]["id"] == pending
    assert (await _post(client, {"prompt": graph(), "prompt_id": done}))[0] == 400  # an id is used once


def _entry(prompt_id: str, status_str: str, event: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"prompt": [4, prompt_id, {}, {"create_time": 1_700_000_000_000, **(extra or {})}, []],
            "outputs": {"9": {"images": [{"filename": "t.png", "type": "temp"}, {"filename": "o.png", "type": "output"}],
                              "animated": [True], "result": ["mesh.glb", None, "notes.txt"]}},
            "status": {"status_str": status_str, "completed": status_str == "success",
                       "messages": [["execution_start", {"prompt_id": prompt_id, "timestamp": 1_700_000_000_500}],
                                    [event, {"prompt_id": prompt_id, "timestamp": 1_700_000_002_000}]]},
            "meta": {}}


def test_history_summary_follows_comfyui_rules() -> None:
    s = summarise_history(_entry("p", "success", "execution_success",
                                 {"extra_pnginfo": {"workflow": {"id": "wf"}}}))
    assert (s.status, s.priority, s.create_time, s.workflow_id) == ("completed", 4, 1_700_000_000_000, "wf")
    assert (s.execution_start_time, s.execution_end_time) == (1_700_000_000_500, 1_700_000_002_000)
    # images count twice, the .glb string once; `animated`, None and non-3D strings do not count
    assert s.outputs_count == 3 and s.previewable_outputs_count == 3
    assert s.preview_output == {"filename": "o.png", "type": "output", "nodeId": "9", "mediaType": "images"}
    assert summarise_history(_entry("p", "error", "execution_interrupted")).status == "cancelled"
    failed = summarise_history(_entry("p", "error", "execution_error"))
    assert failed.status == "failed" and failed.execution_error == {"prompt_id": "p", "timestamp": 1_700_000_002_000}


async def test_job_assets_list_output_files(aiohttp_client: Any, make_loom: LoomFactory) -> None:
    loom = make_loom()
    out_dir = loom.config.output_dir

    class SaveTwo:  # writes two images, one in a subfolder, and reports them as ComfyUI's SaveImage does
        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, value: int) -> dict[str, Any]:
            (out_dir / "sub").mkdir(parents=True, exist_ok=True)
            (out_dir / "a.png").write_bytes(b"\x89PNG a")
            (out_dir / "sub" / "b.png").write_bytes(b"\x89PNG bb")
            return {"ui": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"},
                                      {"filename": "b.png", "subfolder": "sub", "type": "output"}],
                           "text": ["not a file"]}}

    loom.registry.register("SaveTwo", SaveTwo)
    client = await aiohttp_client(create_app(loom, web_root=None))
    status, data = await _post(client, {"prompt": {"1": {"class_type": "Const", "inputs": {"value": 1}},
                                                   "2": {"class_type": "SaveTwo", "inputs": {"value": ["1", 0]}}}})
    assert status == 200, data
    pid = data["prompt_id"]
    await wait_history(client, pid)
    job = await (await client.get(f"/api/jobs/{pid}")).json()
    assert job["outputs_count"] == 2 and job["previewable_outputs_count"] == 2
    assert job["preview_output"] == {"filename": "a.png", "subfolder": "", "type": "output", "nodeId": "2",
                                     "mediaType": "images"}
    assets = await (await client.get(f"/api/jobs/{pid}/assets?limit=500&offset=0")).json()
    assert assets["job_id"] == pid and assets["pagination"] == {"offset": 0, "limit": 500, "total": 2,
                                                                "has_more": False}
    b = assets["assets"][1]
    assert (b["name"], b["node_id"], b["output_key"], b["output_index"], b["size"]) == ("b.png", "2", "images", 1, 7)
    assert b["preview_url"] == "/api/view?type=output&filename=b.png&subfolder=sub"
    listed = await (await client.get("/api/assets?include_tags=output&limit=500")).json()
    assert b["id"] in {a["id"] for a in listed["assets"]}  # the same id as the assets API gives the file
    page = await (await client.get(f"/api/jobs/{pid}/assets?limit=1&offset=1")).json()
    assert [a["name"] for a in page["assets"]] == ["b.png"] and page["pagination"]["has_more"] is False
    assert (await client.get(f"/api/jobs/{pid}/assets?limit=0")).status == 400
    resp = await client.get(f"/api/jobs/{uuid.uuid4()}/assets")
    assert resp.status == 404 and await resp.json() == {"error": "Job not found"}


def test_old_store_gets_job_columns_on_open(tmp_path: Any) -> None:
    path = tmp_path / "loom.db"
    db = sqlite3.connect(str(path))
    db.executescript("""
        CREATE TABLE queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, prompt_id TEXT NOT NULL UNIQUE,
            number REAL NOT NULL, item TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', started REAL);
        CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, prompt_id TEXT NOT NULL UNIQUE,
            entry TEXT NOT NULL, status TEXT NOT NULL, created REAL, started REAL, ended REAL);
        CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);""")
    for pid, status, event in (("a", "success", "execution_success"), ("b", "error", "execution_interrupted")):
        db.execute("INSERT INTO history(prompt_id, entry, status, created) VALUES(?,?,?,?)",
                   (pid, json.dumps(_entry(pid, status, event)), status, 1_700_000_000.0))
    db.commit()
    db.close()
    store = QueueStore(path)
    try:
        rows, total = store.job_page({"completed", "failed", "cancelled"}, None, "created_at", True, None)
        assert total == 2 and {pid: s.status for pid, s in rows} == {"a": "completed", "b": "cancelled"}
        assert store.job_summary("a") == summarise_history(_entry("a", "success", "execution_success"))
    finally:
        store.close()
