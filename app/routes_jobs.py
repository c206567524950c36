"""The unified jobs API (ComfyUI v0.4x `server.py` + `comfy_execution/jobs.py`), read from Loom's SQLite store.

GET /api/jobs, GET /api/jobs/{job_id}, GET /api/jobs/{job_id}/assets, POST /api/jobs/{job_id}/cancel,
POST /api/jobs/cancel. The routes are
declared with /api, so (as in ComfyUI) they also answer at /api/api/.... Errors keep ComfyUI's shape here,
`{"error": "<message>"}`, because that is what its clients parse from these routes.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

from app.errors import ApiError, read_json
from app.job_records import (
    HISTORY_STATUSES,
    JOB_STATUSES,
    history_job,
    normalize_outputs,
    output_items,
    queued_job,
    workflow_id_of,
)
from app.queue_store import QueueItem, QueueStore
from app.safe_paths import confine
from app.state import loom_of
from engine.media_types import content_type

__all__ = ["routes", "JOB_STATUSES", "canonical_job_id"]

SORT_KEYS = ("created_at", "execution_duration")
_QUEUE_STATUS = {"running": "in_progress", "pending": "pending"}


def canonical_job_id(value: Any) -> str | None:
    """ComfyUI's job / prompt id rule: a UUID written 8-4-4-4-12; returned in lower case, None if invalid."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        parsed = str(uuid.UUID(value))
    except ValueError:
        return None
    return parsed if parsed == value.lower() else None


def _refuse(message: str, status: int = 400, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _int_query(raw: str, name: str) -> int | web.Response:
    try:
        return int(raw)
    except ValueError:
        return _refuse(f"{name} must be an integer, got {raw!r}")


def _queued(item: QueueItem, state: str) -> dict[str, Any]:
    return queued_job(item.prompt_id, item.number, item.extra_data, _QUEUE_STATUS[state])


def _sort_key(job: dict[str, Any], sort_by: str) -> float:
    if sort_by == "execution_duration":
        start, end = job.get("execution_start_time"), job.get("execution_end_time")
        return float(end - start) if start and end else 0.0
    return float(job.get("create_time") or 0)


async def list_jobs(request: web.Request) -> web.Response:
    """Jobs of every status, filtered (status, workflow_id), sorted (sort_by, sort_order) and paged."""
    qs = request.query
    statuses: list[str] = list(JOB_STATUSES)
    if qs.get("status"):
        statuses = [s.strip().lower() for s in qs["status"].split(",") if s.strip()]
        bad = [s for s in statuses if s not in JOB_STATUSES]
        if bad:
            return _refuse(f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(JOB_STATUSES)}")
    sort_by = qs.get("sort_by", "created_at").lower()
    if sort_by not in SORT_KEYS:
        return _refuse("sort_by must be 'created_at' or 'execution_duration'")
    sort_order = qs.get("sort_order", "desc").lower()
    if sort_order not in ("asc", "desc"):
        return _refuse("sort_order must be 'asc' or 'desc'")
    limit: int | None = None
    if "limit" in qs:
        parsed = _int_query(qs["limit"], "limit")
        if isinstance(parsed, web.Response):
            return parsed
        if parsed <= 0:
            return _refuse("limit must be a positive integer")
        limit = parsed
    offset = 0
    if "offset" in qs:
        parsed = _int_query(qs["offset"], "offset")
        if isinstance(parsed, web.Response):
            return parsed
        offset = max(parsed, 0)  # ComfyUI clamps a negative offset to 0
    workflow_id = qs.get("workflow_id") or None

    store: QueueStore = loom_of(request).queue
    queued = [_queued(item, state) for item, state in store.queued_rows()
              if _QUEUE_STATUS[state] in statuses
              and (workflow_id is None or workflow_id_of(item.extra_data) == workflow_id)]
    wanted = HISTORY_STATUSES.intersection(statuses)
    finished, total = [], 0
    if wanted:
        rows, total = store.job_page(wanted, workflow_id, sort_by, sort_order == "desc",
                                     None if limit is None else offset + limit)
        finished = [history_job(pid, summary) for pid, summary in rows]
    # The store returns finished jobs already in order; sorting the (few) queued ones in keeps ComfyUI's order
    # (a stable sort over running, pending, then history).
    jobs = sorted(queued + finished, key=lambda j: _sort_key(j, sort_by), reverse=sort_order == "desc")
    total += len(queued)
    page = jobs[offset:] if limit is None else jobs[offset:offset + limit]
    return web.json_response({"jobs": page, "pagination": {
        "offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total}})


async def get_job(request: web.Request) -> web.Response:
    """One job with its outputs, execution status and workflow; 404 `{"error": "Job not found"}`."""
    job_id = request.match_info["job_id"]
    store: QueueStore = loom_of(request).queue
    rec = store.history_record(job_id)
    summary = store.job_summary(job_id) if rec is not None else None
    if rec is not None and summary is not None:
        prompt = rec.entry.get("prompt") or [None, job_id, {}, {}, []]
        return web.json_response({**history_job(job_id, summary),
                                  "outputs": normalize_outputs(rec.entry.get("outputs") or {}),
                                  "execution_status": rec.entry.get("status"),
                                  "workflow": {"prompt": prompt[2], "extra_data": prompt[3]}})
    for item, state in store.queued_rows():
        if item.prompt_id == job_id:
            return web.json_response(_queued(item, state))
    return _refuse("Job not found", 404)


def _job_asset(request: web.Request, node_id: str, key: str, index: int, item: dict[str, Any]) -> dict[str, Any]:
    from app.routes_assets import asset_id  # the same id GET /api/assets gives the file

    loom = loom_of(request)
    kind = str(item["type"]) if item.get("type") in ("output", "input", "temp") else "output"
    name, sub = str(item.get("filename") or ""), str(item.get("subfolder") or "")
    root = {"output": loom.config.output_dir, "input": loom.config.input_dir, "temp": loom.config.temp_dir}[kind]
    size = created = None
    try:
        path = confine(root, sub, name, what="output file")
        st = path.stat()
        size, created = st.st_size, datetime.fromtimestamp(st.st_ctime, tz=timezone.utc).isoformat()
    except (ApiError, OSError):
        pass  # deleted since, or a name that leaves its folder: listed without size
    url = f"/api/view?type={kind}&filename={quote(name, safe='')}" + (f"&subfolder={quote(sub, safe='')}" if sub else "")
    out = {"id": asset_id((kind,), f"{sub}/{name}" if sub else name), "name": name, "preview_url": url,
           "mime_type": content_type(name), "size": size, "node_id": node_id, "output_key": key,
           "output_index": index, "created_at": created}
    return {k: v for k, v in out.items() if v is not None}


async def job_assets(request: web.Request) -> web.Response:
    """A finished job's output files as assets: `{job_id, assets, pagination}` (limit, offset)."""
    job_id = request.match_info["job_id"]
    qs = request.query
    limit, offset = 500, 0
    for name in ("limit", "offset"):
        if name in qs:
            parsed = _int_query(qs[name], name)
            if isinstance(parsed, web.Response):
                return parsed
            if parsed < (1 if name == "limit" else 0):
                return _refuse(f"{name} must be {'a positive integer' if name == 'limit' else '>= 0'}")
            limit, offset = (parsed, offset) if name == "limit" else (limit, parsed)
    rec = loom_of(request).queue.history_record(job_id)
    if rec is None:
        if any(item.prompt_id == job_id for item, _ in loom_of(request).queue.queued_rows()):
            return web.json_response({"job_id": job_id, "assets": [], "pagination": {
                "offset": offset, "limit": limit, "total": 0, "has_more": False}})
        return _refuse("Job not found", 404)
    files = [(n, k, i, item) for n, k, i, item in output_items(rec.entry.get("outputs")) if item.get("filename")]
    page = files[offset:offset + limit]
    return web.json_response({"job_id": job_id, "assets": [_job_asset(request, *f) for f in page], "pagination": {
        "offset": offset, "limit": limit, "total": len(files), "has_more": offset + len(page) < len(files)}})


def _cancel(request: web.Request, job_id: str) -> bool:
    """Dequeue a pending job or interrupt a running one; False for a finished or unknown job."""
    loom = loom_of(request)
    if loom.queue.delete_pending([job_id]):
        loom.hub.send("status", {"status": {"exec_info": {"queue_remaining": loom.queue.remaining()}}})
        return True
    running = any(item.prompt_id == job_id for item in loom.queue.running())
    return running and loom.backend.interrupt(job_id)


async def cancel_job(request: web.Request) -> web.Response:
    """`{"cancelled": bool}`: idempotent, a finished or unknown job answers 200 with false."""
    return web.json_response({"cancelled": _cancel(request, request.match_info["job_id"])})


async def cancel_jobs(request: web.Request) -> web.Response:
    """Batch cancel `{"job_ids": [...]}`: 400 for malformed ids, 404 (nothing cancelled) for unknown ones."""
    try:
        body = await read_json(request)
    except Exception:  # noqa: BLE001 - any unreadable body is ComfyUI's one message
        return _refuse("Request body must be valid JSON")
    job_ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(job_ids, list):
        return _refuse("job_ids must be a list")
    invalid = [j if isinstance(j, str) else repr(j) for j in job_ids if canonical_job_id(j) is None]
    if invalid:
        return _refuse("job_ids contains invalid id(s)", invalid_ids=invalid)
    job_ids = [c for j in job_ids if (c := canonical_job_id(j)) is not None]
    store: QueueStore = loom_of(request).queue
    queued = {item.prompt_id for item, _ in store.queued_rows()}
    unknown = [j for j in job_ids if j not in queued and store.job_summary(j) is None]
    if unknown:
        return _refuse("Job(s) not found", 404, unknown_ids=unknown)
    cancelled = False
    for job_id in dict.fromkeys(job_ids):
        cancelled = _cancel(request, job_id) or cancelled
    return web.json_response({"cancelled": cancelled})


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/api/jobs", list_jobs), ("GET", "/api/jobs/{job_id}", get_job),
            ("GET", "/api/jobs/{job_id}/assets", job_assets),
            ("POST", "/api/jobs/cancel", cancel_jobs), ("POST", "/api/jobs/{job_id}/cancel", cancel_job)]
