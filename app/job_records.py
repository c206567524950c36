"""The jobs API's view of one prompt (ComfyUI's `comfy_execution/jobs.py` rules, ComfyUI v0.4x).

A finished prompt's job fields are computed once, when its history row is written (`QueueStore` keeps them in
columns so `GET /api/jobs` filters, sorts and pages in SQL); queued prompts are summarised on the fly.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["JOB_STATUSES", "HISTORY_STATUSES", "JobSummary", "summarise_history", "queued_job", "history_job",
           "outputs_summary", "output_items", "normalize_outputs", "workflow_id_of"]

# Every status ComfyUI's jobs API knows, in its order.
JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
HISTORY_STATUSES = frozenset({"completed", "failed", "cancelled"})
PREVIEWABLE_MEDIA = frozenset({"images", "video", "audio", "3d"})
THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")


@dataclass(frozen=True)
class JobSummary:
    """What the jobs list shows of a finished prompt (stored in history columns)."""

    status: str
    priority: float | int | None
    create_time: int | None
    execution_start_time: int | None
    execution_end_time: int | None
    execution_error: dict[str, Any] | None
    outputs_count: int
    preview_output: dict[str, Any] | None
    workflow_id: str | None
    previewable_outputs_count: int = 0


def workflow_id_of(extra_data: Any) -> str | None:
    """`extra_data.extra_pnginfo.workflow.id`, the frontend's workflow id (None when absent or malformed)."""
    pnginfo = extra_data.get("extra_pnginfo") if isinstance(extra_data, dict) else None
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    wid = workflow.get("id") if isinstance(workflow, dict) else None
    return wid if isinstance(wid, str) else None


def _create_time(extra_data: Any) -> int | None:
    ct = extra_data.get("create_time") if isinstance(extra_data, dict) else None
    return int(ct) if isinstance(ct, (int, float)) and not isinstance(ct, bool) else None


def _normalize_item(item: Any) -> Any:
    """A string output item with a 3D extension becomes a file dict; other strings and None do not count."""
    if isinstance(item, str):
        if item.lower().endswith(THREE_D_EXTENSIONS):
            return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"}
        return None
    return item if isinstance(item, dict) else None


def _previewable(media_type: str, item: dict[str, Any]) -> bool:
    if media_type in PREVIEWABLE_MEDIA:
        return True
    fmt = item.get("format")
    if isinstance(fmt, str) and fmt.startswith(("video/", "audio/")):
        return True
    name = item.get("filename")
    return isinstance(name, str) and name.lower().endswith(THREE_D_EXTENSIONS)


def outputs_summary(outputs: Any) -> tuple[int, dict[str, Any] | None]:
    """(number of output items, preview item): a previewable `type: output` item first, else any previewable."""
    count, _, preview = _summary(outputs)
    return count, preview


def output_items(outputs: Any) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """Every counted output item as (node id, media key, index in its list, normalized item)."""
    if not isinstance(outputs, dict):
        return
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for index, raw in enumerate(items):
                item = _normalize_item(raw)
                if item is not None:
                    yield str(node_id), str(media_type), index, item


def _summary(outputs: Any) -> tuple[int, int, dict[str, Any] | None]:
    count = previewable = 0
    preview: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    for node_id, media_type, _, item in output_items(outputs):
        count += 1
        if not _previewable(media_type, item):
            continue
        previewable += 1
        if preview is None:
            enriched = {**item, "nodeId": node_id}
            enriched.setdefault("mediaType", media_type)
            if item.get("type") == "output":
                preview = enriched
            elif fallback is None:
                fallback = enriched
    return count, previewable, preview or fallback


def normalize_outputs(outputs: Any) -> Any:
    """Outputs as `GET /api/jobs/{id}` shows them: None items dropped, 3D file names made file dicts."""
    if not isinstance(outputs, dict):
        return outputs
    out: dict[str, Any] = {}
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            out[node_id] = node_outputs
            continue
        node: dict[str, Any] = {}
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                node[media_type] = items
                continue
            node[media_type] = [n if (n := _normalize_item(i)) is not None else i for i in items if i is not None]
        out[node_id] = node
    return out


def summarise_history(entry: dict[str, Any], started: float | None = None, ended: float | None = None,
                      created: float | None = None) -> JobSummary:
    """A history entry's job fields; times come from the entry (create_time, status messages), else the store's
    own clock (epoch seconds): the frontend requires a `create_time` on every job."""
    prompt = entry.get("prompt")
    prompt = prompt if isinstance(prompt, list) and len(prompt) >= 4 else [None, None, {}, {}, []]
    extra = prompt[3] if isinstance(prompt[3], dict) else {}
    raw_status = entry.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    start_ms = end_ms = None
    error: dict[str, Any] | None = None
    interrupted = False
    for message in status.get("messages") or []:
        if not (isinstance(message, (list, tuple)) and len(message) >= 2 and isinstance(message[1], dict)):
            continue
        event, data = message[0], message[1]
        if event == "execution_start":
            start_ms = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end_ms = data.get("timestamp")
            if event == "execution_error":
                error = data
            elif event == "execution_interrupted":
                interrupted = True
    status_str = status.get("status_str")
    job_status = ("cancelled" if interrupted else "failed") if status_str == "error" else "completed"
    count, previewable, preview = _summary(entry.get("outputs"))
    return JobSummary(
        status=job_status, priority=prompt[0] if isinstance(prompt[0], (int, float)) else None,
        create_time=_create_time(extra) or _ms_from_s(created),
        execution_start_time=_ms(start_ms) if start_ms is not None else _ms_from_s(started),
        execution_end_time=_ms(end_ms) if end_ms is not None else _ms_from_s(ended),
        execution_error=error, outputs_count=count, preview_output=preview, workflow_id=workflow_id_of(extra),
        previewable_outputs_count=previewable)


def _ms(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ms_from_s(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None


def _prune(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if v is not None}


def queued_job(prompt_id: str, number: Any, extra_data: dict[str, Any], status: str) -> dict[str, Any]:
    """A pending / in_progress job as ComfyUI lists it (no execution times, no outputs yet)."""
    return _prune({"id": prompt_id, "status": status, "priority": number, "create_time": _create_time(extra_data),
                   "outputs_count": 0, "workflow_id": workflow_id_of(extra_data)})


def history_job(prompt_id: str, s: JobSummary) -> dict[str, Any]:
    """A finished job as ComfyUI lists it (None fields left out)."""
    return _prune({"id": prompt_id, "status": s.status, "priority": s.priority, "create_time": s.create_time,
                   "execution_start_time": s.execution_start_time, "execution_end_time": s.execution_end_time,
                   "execution_error": s.execution_error, "outputs_count": s.outputs_count,
                   "previewable_outputs_count": s.previewable_outputs_count, "preview_output": s.preview_output,
                   "workflow_id": s.workflow_id})


def summary_columns(s: JobSummary) -> tuple[Any, ...]:
    """The history columns a summary is stored in (see `QueueStore`)."""
    return (s.status, s.priority, s.create_time, s.execution_start_time, s.execution_end_time,
            json.dumps(s.execution_error) if s.execution_error is not None else None, s.outputs_count,
            json.dumps(s.preview_output) if s.preview_output is not None else None, s.workflow_id,
            s.previewable_outputs_count)


def summary_from_columns(row: tuple[Any, ...]) -> JobSummary:
    """Inverse of `summary_columns`."""
    status, priority, create, start, end, error, count, preview, wid, previewable = row
    return JobSummary(status, priority, create, start, end, json.loads(error) if error else None, int(count or 0),
                      json.loads(preview) if preview else None, wid, int(previewable or 0))
