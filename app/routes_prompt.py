"""/prompt, /queue, /interrupt, /free, /history (spec 1.4, 1.5, 3.2)."""
from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

from aiohttp import web

from app.errors import BadRequest, PromptRejected, error_body, read_json
from app.queue_store import QueueItem
from app.routes_jobs import canonical_job_id
from app.state import loom_of

__all__ = ["routes", "SENSITIVE_KEYS", "parse_int_param", "broadcast_status"]

log = logging.getLogger("loom.routes")

SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


def parse_int_param(request: web.Request, name: str, *, minimum: int = 0) -> int | None:
    """An optional integer query parameter; ValueError with ComfyUI's message when it is not an integer."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


def broadcast_status(request: web.Request) -> None:
    loom = loom_of(request)
    loom.hub.send("status", {"status": {"exec_info": {"queue_remaining": loom.queue.remaining()}}})


async def _json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    if not required and not (await request.read()).strip():
        return {}
    body = await read_json(request, required=True)
    if not isinstance(body, dict):
        raise BadRequest(f"{request.method} {request.path}: the body must be a JSON object, "
                         f"got {type(body).__name__}", type_="invalid_json")
    return body


def _envelope_error(key: str, expected: str, got: Any) -> BadRequest:
    return BadRequest(f"POST /prompt: '{key}' must be {expected}, got {type(got).__name__}",
                      "fix the request envelope (spec: client_id str, extra_data object, number numeric, "
                      "front bool, prompt_id a UUID string, partial_execution_targets list of str)",
                      type_="invalid_envelope", extra_info={"key": key})


def _check_envelope(body: dict[str, Any]) -> None:
    number = body.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                               or not math.isfinite(float(number))):
        raise _envelope_error("number", "a finite number", number)
    if "front" in body and not isinstance(body["front"], bool) and body["front"] is not None:
        raise _envelope_error("front", "a boolean", body["front"])
    if body.get("client_id") is not None and not isinstance(body["client_id"], str):
        raise _envelope_error("client_id", "a string", body["client_id"])
    extra = body.get("extra_data")
    if extra is not None and not isinstance(extra, dict):
        raise _envelope_error("extra_data", "an object", extra)
    if isinstance(extra, dict):
        if extra.get("extra_pnginfo") is not None and not isinstance(extra["extra_pnginfo"], dict):
            raise _envelope_error("extra_data.extra_pnginfo", "an object (e.g. {\"workflow\": {...}})",
                                  extra["extra_pnginfo"])
        if extra.get("preview_method") is not None and not isinstance(extra["preview_method"], str):
            raise _envelope_error("extra_data.preview_method", "a string", extra["preview_method"])
    pid = body.get("prompt_id")
    if pid is not None and canonical_job_id(pid) is None:
        got = repr(pid[:80]) if isinstance(pid, str) else f"a {type(pid).__name__}"
        raise BadRequest(f"POST /prompt: 'prompt_id' must be a UUID string such as '{uuid.uuid4()}', got {got}",
                         "leave prompt_id out to let the server pick one, or send a fresh str(uuid.uuid4())",
                         type_="invalid_prompt_id", extra_info={"key": "prompt_id"})
    targets = body.get("partial_execution_targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        raise _envelope_error("partial_execution_targets", "a list of node id strings", targets)


def _node_errors(valid: Any) -> dict[str, Any]:
    errors = getattr(valid, "node_errors", None)
    if isinstance(errors, dict):
        return errors
    warnings = getattr(valid, "warnings", None)
    return warnings if isinstance(warnings, dict) else {}


def _duplicate(prompt_id: str) -> BadRequest:
    return BadRequest(f"POST /prompt: prompt_id {prompt_id!r} is already queued or in the history; "
                      "a prompt id is used once", "use a fresh prompt_id or leave it out",
                      type_="duplicate_prompt_id", extra_info={"prompt_id": prompt_id})


async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response({"exec_info": {"queue_remaining": loom_of(request).queue.remaining()}})


async def post_prompt(request: web.Request) -> web.Response:
    """Validate and queue a prompt. Every 400 carries `error` {type, message, details, extra_info} and
    `node_errors` (empty when no node is to blame), the two keys ComfyUI's clients read."""
    try:
        return await _post_prompt(request)
    except BadRequest as exc:
        raise PromptRejected({**exc.to_wire(), "node_errors": {}}) from None


async def _post_prompt(request: web.Request) -> web.Response:
    loom = loom_of(request)
    body = await _json_object(request, required=True)
    for handler in list(loom.on_prompt_handlers):
        try:
            changed = handler(body)
            if isinstance(changed, dict):
                body = changed
        except Exception:
            log.exception("on_prompt handler %r failed; prompt left unchanged by it", handler)
    if "prompt" not in body:
        raise PromptRejected({"error": error_body("no_prompt", "No prompt provided", "No prompt provided"),
                              "node_errors": {}})
    prompt = body["prompt"]
    if not isinstance(prompt, dict):
        raise PromptRejected({"error": error_body("invalid_prompt", "Invalid prompt: 'prompt' must be an object "
                                                  "mapping node ids to nodes", f"got {type(prompt).__name__}"),
                              "node_errors": {}})
    _check_envelope(body)
    number = loom.queue.assign_number(body.get("number"), bool(body.get("front")))
    valid = loom.validate(prompt, body.get("partial_execution_targets"))
    prompt_id = canonical_job_id(body.get("prompt_id")) or str(uuid.uuid4())
    if loom.queue.is_known(prompt_id):  # refused before validation work; enqueue checks again atomically
        raise _duplicate(prompt_id)
    extra_data = dict(body.get("extra_data") or {})
    if body.get("client_id") is not None:
        extra_data["client_id"] = body["client_id"]
    extra_data["create_time"] = int(time.time() * 1000)
    sensitive = {k: extra_data.pop(k) for k in SENSITIVE_KEYS if k in extra_data}
    outputs = [str(o) for o in getattr(valid, "outputs", [])]
    item = QueueItem(number, prompt_id, getattr(valid, "prompt", prompt), extra_data, outputs)
    try:
        loom.queue.enqueue(item, sensitive)
    except ValueError:
        raise _duplicate(prompt_id) from None
    loom.backend.submit(item)
    broadcast_status(request)
    answer = {"prompt_id": prompt_id, "number": number, "node_errors": _node_errors(valid)}
    warning = getattr(loom.backend, "warning", None)  # the Ray backend: queued, but no worker is ready
    if callable(warning) and (text := warning()):
        answer["warning"] = text
    return web.json_response(answer)


async def get_queue(request: web.Request) -> web.Response:
    q = loom_of(request).queue
    return web.json_response({"queue_running": [i.to_wire() for i in q.running()],
                              "queue_pending": [i.to_wire() for i in q.pending()]})


def _id_list(body: dict[str, Any], key: str = "delete") -> list[str]:
    ids = body.get(key)
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest(f"'{key}' must be a list of prompt id strings", type_="invalid_json")
    return ids


async def post_queue(request: web.Request) -> web.Response:
    loom = loom_of(request)
    body = await _json_object(request, required=True)
    ids = _id_list(body)
    if body.get("clear"):
        loom.queue.clear_pending()
    if ids:
        loom.queue.delete_pending(ids)
    broadcast_status(request)
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    body = await _json_object(request, required=False)
    pid = body.get("prompt_id")
    if pid is not None and not isinstance(pid, str):
        raise BadRequest("POST /interrupt: 'prompt_id' must be a string", type_="invalid_json")
    loom_of(request).backend.interrupt(pid)
    return web.Response(status=200)


async def post_free(request: web.Request) -> web.Response:
    body = await _json_object(request, required=False)
    for key in ("unload_models", "free_memory"):
        if key in body and not isinstance(body[key], bool):
            raise BadRequest(f"POST /free: '{key}' must be a boolean", type_="invalid_json")
    unload, free = bool(body.get("unload_models")), bool(body.get("free_memory"))
    if unload or free:
        loom_of(request).backend.request_free(unload, free)
    return web.Response(status=200)


async def get_history(request: web.Request) -> web.Response:
    try:
        max_items = parse_int_param(request, "max_items")
        offset = parse_int_param(request, "offset")
    except ValueError as exc:  # ComfyUI's shape for a bad history query: {"error": "max_items must be an integer"}
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(loom_of(request).queue.history(max_items, offset))


async def get_history_entry(request: web.Request) -> web.Response:
    pid = request.match_info["prompt_id"]
    entry = loom_of(request).queue.history_entry(pid)
    return web.json_response({pid: entry} if entry is not None else {})


async def post_history(request: web.Request) -> web.Response:
    q = loom_of(request).queue
    body = await _json_object(request, required=True)
    ids = _id_list(body)
    if body.get("clear"):
        q.clear_history()
    if ids:
        q.delete_history(ids)
    return web.Response(status=200)


def routes() -> list[tuple[str, str, Any]]:
    """(method, path, handler) rows, mounted bare and under /api by server.create_app."""
    return [
        ("GET", "/prompt", get_prompt), ("POST", "/prompt", post_prompt),
        ("GET", "/queue", get_queue), ("POST", "/queue", post_queue),
        ("POST", "/interrupt", post_interrupt), ("POST", "/free", post_free),
        ("GET", "/history", get_history), ("POST", "/history", post_history),
        ("GET", "/history/{prompt_id}", get_history_entry),
    ]
