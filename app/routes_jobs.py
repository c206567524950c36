"""The unified jobs API: GET /api/jobs, /api/jobs/{job_id} (declared with /api, so also /api/api/...)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from app.errors import BadRequest
from app.queue_store import QueueItem
from app.routes_prompt import parse_int_param
from app.state import loom_of

__all__ = ["routes", "JOB_STATUSES"]

JOB_STATUSES = ("pending", "in_progress", "completed", "failed")
MEDIA_KEYS = {"images": "image", "video": "video", "gifs": "video", "audio": "audio", "animated": "image"}


def _workflow_id(extra: dict[str, Any]) -> Any:
    wf = (extra.get("extra_pnginfo") or {}).get("workflow") if isinstance(extra.get("extra_pnginfo"), dict) else None
    return wf.get("id") if isinstance(wf, dict) else None


def _prune(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if v is not None}


def _queued_job(item: QueueItem, status: str, started: float | None) -> dict[str, Any]:
    return _prune({"id": item.prompt_id, "status": status, "priority": item.number,
                   "create_time": item.extra_data.get("create_time"),
                   "execution_start_time": int(started * 1000) if started else None,
                   "outputs_count": 0, "workflow_id": _workflow_id(item.extra_data)})


def _preview(outputs: dict[str, Any]) -> dict[str, Any] | None:
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, media in MEDIA_KEYS.items():
            items = ui.get(key)
            if isinstance(items, list) and items and isinstance(items[0], dict):
                return {**items[0], "nodeId": node_id, "mediaType": media}
    return None


def _history_job(rec: Any) -> dict[str, Any]:
    entry = rec.entry
    prompt = entry.get("prompt") or [None, rec.prompt_id, {}, {}, []]
    extra = prompt[3] if len(prompt) > 3 and isinstance(prompt[3], dict) else {}
    status = entry.get("status") or {}
    error = next((m[1] for m in status.get("messages", []) if m and m[0] in
                  ("execution_error", "execution_interrupted")), None)
    outputs = entry.get("outputs") or {}
    count = sum(len(v) for ui in outputs.values() if isinstance(ui, dict) for v in ui.values()
                if isinstance(v, list))
    return _prune({"id": rec.prompt_id, "status": "completed" if rec.status == "success" else "failed",
                   "priority": prompt[0], "create_time": int(rec.created * 1000) if rec.created else None,
                   "execution_start_time": int(rec.started * 1000) if rec.started else None,
                   "execution_end_time": int(rec.ended * 1000) if rec.ended else None,
                   "execution_error": error, "outputs_count": count, "preview_output": _preview(outputs),
                   "workflow_id": _workflow_id(extra)})


def _all_jobs(request: web.Request) -> list[dict[str, Any]]:
    q = loom_of(request).queue
    jobs = [_queued_job(i, "in_progress", q.started_at(i.prompt_id)) for i in q.running()]
    jobs += [_queued_job(i, "pending", None) for i in q.pending()]
    jobs += [_history_job(r) for r in q.history_records()]
    return jobs


async def list_jobs(request: web.Request) -> web.Response:
    qs = request.query
    statuses = [s for s in qs.get("status", "").split(",") if s]
    bad = [s for s in statuses if s not in JOB_STATUSES]
    if bad:
        raise BadRequest(f"GET /api/jobs: unknown status {', '.join(bad)}; use {', '.join(JOB_STATUSES)}",
                         type_="bad_query")
    sort_by = qs.get("sort_by", "created_at")
    if sort_by not in ("created_at", "execution_duration"):
        raise BadRequest(f"GET /api/jobs: sort_by={sort_by!r}; use created_at or execution_duration",
                         type_="bad_query")
    order = qs.get("sort_order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest(f"GET /api/jobs: sort_order={order!r}; use asc or desc", type_="bad_query")
    limit = parse_int_param(request, "limit", minimum=1)
    offset = parse_int_param(request, "offset") or 0
    jobs = _all_jobs(request)
    if statuses:
        jobs = [j for j in jobs if j["status"] in statuses]
    wf = qs.get("workflow_id")
    if wf:
        jobs = [j for j in jobs if j.get("workflow_id") == wf]

    def key(j: dict[str, Any]) -> float:
        if sort_by == "execution_duration":
            s, e = j.get("execution_start_time"), j.get("execution_end_time")
            return float(e - s) if s is not None and e is not None else -1.0
        return float(j.get("create_time") or 0)

    jobs.sort(key=key, reverse=order == "desc")
    total = len(jobs)
    page = jobs[offset: offset + limit if limit is not None else None]
    return web.json_response({"jobs": page, "pagination": {
        "offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total}})


async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    q = loom_of(request).queue
    rec = q.history_record(job_id)
    if rec is not None:
        prompt = rec.entry.get("prompt") or [None, job_id, {}, {}, []]
        return web.json_response({**_history_job(rec), "outputs": rec.entry.get("outputs") or {},
                                  "execution_status": rec.entry.get("status"),
                                  "workflow": {"prompt": prompt[2], "extra_data": prompt[3]}})
    for status, items in (("in_progress", q.running()), ("pending", q.pending())):
        for item in items:
            if item.prompt_id == job_id:
                return web.json_response({**_queued_job(item, status, q.started_at(job_id)), "outputs": {},
                                          "workflow": {"prompt": item.prompt, "extra_data": item.extra_data}})
    return web.json_response({"error": "Job not found"}, status=404)


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/api/jobs", list_jobs), ("GET", "/api/jobs/{job_id}", get_job)]
