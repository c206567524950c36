"""The OpenAPI 3.1 description of Loom's HTTP API (GET /openapi.json).

Written by hand, not derived from the router, so a test can check that the two agree.
"""
from __future__ import annotations

from typing import Any

__all__ = ["openapi_document", "API_ROUTES", "UNPREFIXED_ROUTES"]

_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON = {"description": "OK", "content": {"application/json": {"schema": {}}}}

# (method, path, summary, extra responses): served bare and under /api.
API_ROUTES: list[tuple[str, str, str, tuple[int, ...]]] = [
    ("GET", "/prompt", "Queue status: {exec_info: {queue_remaining}}", ()),
    ("POST", "/prompt", "Validate and queue an API-format prompt", (400,)),
    ("GET", "/queue", "Running and pending queue items", ()),
    ("POST", "/queue", "Clear / delete pending items", (400,)),
    ("POST", "/interrupt", "Interrupt the running prompt (optionally only a given prompt_id)", (400,)),
    ("POST", "/free", "Unload models / reset caches between prompts", (400,)),
    ("GET", "/history", "History entries (max_items, offset)", (400,)),
    ("POST", "/history", "Clear / delete history entries", (400,)),
    ("GET", "/history/{prompt_id}", "One history entry ({} when unknown)", ()),
    ("GET", "/object_info", "Every node definition", ()),
    ("GET", "/object_info/{node_class}", "One node definition ({} when unknown)", ()),
    ("GET", "/system_stats", "Host and device information", ()),
    ("GET", "/features", "Server feature flags", ()),
    ("GET", "/embeddings", "Embedding names", ()),
    ("GET", "/models", "Model folder keys", ()),
    ("GET", "/models/{folder}", "Files in a model folder", (404,)),
    ("GET", "/view_metadata/{folder_name}", "safetensors __metadata__ of a model file", (404,)),
    ("GET", "/experiment/models", "Model folders with their search paths", ()),
    ("GET", "/experiment/models/{folder}", "Model files with size and times", (404,)),
    ("GET", "/experiment/models/preview/{folder}/{path_index}/{filename}", "Model preview image", (404,)),
    ("GET", "/view", "An output / input / temp file (preview, channel)", (400, 403, 404)),
    ("POST", "/upload/image", "Upload an image (multipart)", (400, 403, 413)),
    ("POST", "/upload/mask", "Upload a mask merged into an image's alpha", (400, 403, 404, 413)),
    ("GET", "/users", "User storage mode", ()),
    ("POST", "/users", "Create a user (single-user mode: refused)", (400,)),
    ("GET", "/settings", "All settings", ()),
    ("POST", "/settings", "Merge settings", (400,)),
    ("GET", "/settings/{id}", "One setting (null when unset)", ()),
    ("POST", "/settings/{id}", "Set one setting", (400,)),
    ("GET", "/userdata", "List user files (dir, recurse, full_info, split)", (400, 403, 404)),
    ("GET", "/v2/userdata", "Structured listing of user files", (400, 403, 404)),
    ("GET", "/userdata/{file}", "Read a user file", (400, 403, 404)),
    ("POST", "/userdata/{file}", "Write a user file", (400, 403, 409)),
    ("DELETE", "/userdata/{file}", "Delete a user file", (403, 404)),
    ("POST", "/userdata/{file}/move/{dest}", "Move / rename a user file", (403, 404, 409)),
    ("GET", "/extensions", "Frontend extension script URLs", ()),
    ("GET", "/i18n", "Custom node translations", ()),
    ("GET", "/workflow_templates", "Custom node workflow templates", ()),
    ("GET", "/workflow_templates/{pack}/{path}", "A file of a custom node pack's template folder", (403, 404)),
    ("GET", "/global_subgraphs", "Subgraph blueprints from custom nodes", ()),
    ("GET", "/global_subgraphs/{id}", "One subgraph blueprint", ()),
    ("GET", "/openapi.json", "This document", ()),
    ("GET", "/loom/custom_nodes", "What happened to each custom node pack at start-up", ()),
    ("GET", "/ws", "WebSocket (clientId query): status, execution events, previews", ()),
    ("GET", "/api/jobs", "Unified job list (status, workflow_id, sort_by, sort_order, limit, offset)", (400,)),
    ("GET", "/api/jobs/{job_id}", "One job with outputs and workflow", (404,)),
    ("GET", "/api/jobs/{job_id}/assets", "A job's output files as assets (limit, offset)", (400, 404)),
    ("POST", "/api/jobs/{job_id}/cancel", "Cancel a pending or running job: {cancelled: bool}", ()),
    ("POST", "/api/jobs/cancel", "Cancel several jobs {job_ids: [...]} (fail-fast on unknown ids)", (400, 404)),
    ("GET", "/node_replacements", "Node replacement table (empty in Loom)", ()),
    ("GET", "/templates/{path}", "A file of the installed comfyui-workflow-templates package", (404,)),
    ("GET", "/loom/templates", "Template browser list: workflows/ and package templates, with what is missing", ()),
    ("GET", "/loom/workflows/{name}", "One example workflow from workflows/", (400, 404)),
    ("GET", "/api/assets", "Assets on disk (input, output, models): include_tags, exclude_tags, name_contains, "
     "sort, order, limit, offset", (400,)),
    ("GET", "/api/assets/{id}", "One asset", (404,)),
    ("GET", "/api/assets/{id}/content", "An asset's file", (404,)),
    ("GET", "/api/tags", "Asset tags with counts: prefix, order, limit, offset", (400,)),
]

# Served only at the given path.
UNPREFIXED_ROUTES: list[tuple[str, str, str, tuple[int, ...]]] = [
    ("GET", "/internal/logs", "Recent server log text", ()),
    ("GET", "/internal/logs/raw", "Recent server log entries", ()),
    ("PATCH", "/internal/logs/subscribe", "Subscribe a websocket client to `logs` events", (400,)),
    ("GET", "/internal/folder_paths", "Model folder search paths", ()),
    ("GET", "/internal/files/{directory_type}", "Top-level files of output / input / temp", (400,)),
    ("GET", "/", "The editor (index.html) or a placeholder page", ()),
    ("GET", "/extensions/{pack}/{path}", "A custom node's web file", (404,)),
    ("GET", "/{path}", "A file of the editor's web root", (404,)),
]


def _operation(method: str, path: str, summary: str, errors: tuple[int, ...]) -> dict[str, Any]:
    params = [{"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
              for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]
    op: dict[str, Any] = {"summary": summary, "operationId": f"{method.lower()}_{path}",
                          "responses": {"200": _JSON, **{str(c): _ERR for c in errors},
                                        "401": _ERR, "403": _ERR}}
    if params:
        op["parameters"] = params
    if method in ("POST", "PATCH") and "upload" not in path:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {}}}}
    elif "upload" in path:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": {"image": {"type": "string", "format": "binary"},
                                             "type": {"type": "string"}, "subfolder": {"type": "string"},
                                             "overwrite": {"type": "string"}}}}}}
    return op


def openapi_document(extra_routes: list[tuple[str, str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The OpenAPI 3.1 document; every /api-mounted route appears at both paths.

    `extra_routes` are (method, path, summary) rows added at run time (custom node packs, the custom node
    loader's own routes); they are documented as they were registered.
    """
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary in extra_routes:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, summary or "extension route", ())
    for method, path, summary, errors in API_ROUTES:
        for p in (path, "/api" + path):
            paths.setdefault(p, {})[method.lower()] = _operation(method, p, summary, errors)
    for method, path, summary, errors in UNPREFIXED_ROUTES:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, summary, errors)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loom", "version": "0.1.0",
                 "description": "ComfyUI-compatible workflow server. Every dynamic route is served bare and "
                                "under /api. With an auth token, send 'Authorization: Bearer <token>'."},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {}}, "required": ["error"]}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "loom_token"}},
        },
        "security": [{}, {"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
