"""Read-only assets API over Loom's own files (ComfyUI v0.4x `app/assets/api/routes.py` shapes).

ComfyUI keeps assets in a database; Loom lists what is on disk: input/, output/ and every model folder. An
asset's id is a UUID derived from where the file lives, so it is stable across restarts without a table.
Only the read routes exist (list, detail, content, tags); the server's `assets` feature flag stays False, as
in a ComfyUI started without --enable-assets, so the frontend keeps its classic model widgets and uploads.
Errors use the assets API's own shape: `{"error": {"code", "message", "details"}}`.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from app.errors import ApiError, BadRequest
from app.routes_files import UNSAFE_MIME
from app.safe_paths import confine
from app.state import loom_of
from engine.media_types import content_type

__all__ = ["routes", "asset_id"]

_NAMESPACE = uuid.UUID("6c6f6f6d-2d61-7373-6574-732d76310000")  # "loom-assets-v1": ids stay stable
SORT_KEYS = ("name", "created_at", "updated_at", "size", "last_access_time")
UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


@dataclass(frozen=True)
class _File:
    tags: tuple[str, ...]
    rel: str  # forward slashes, relative to its folder
    path: str
    stat: os.stat_result


def asset_id(tags: tuple[str, ...], rel: str) -> str:
    """The asset id of a file: a UUID5 of its root tags and relative path."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(tags) + ":" + rel))


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details or {}}}, status=status)


def _walk(root: Path, tags: tuple[str, ...]) -> Iterator[_File]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = Path(dirpath, name).relative_to(root).as_posix()
            try:
                real = confine(root, rel, what="asset")  # a symlink out of the folder is not listed
                yield _File(tags, rel, str(real), real.stat())
            except (ApiError, OSError):
                continue


def _files(request: web.Request) -> list[_File]:
    loom = loom_of(request)
    out = [*_walk(loom.config.input_dir, ("input",)), *_walk(loom.config.output_dir, ("output",))]
    paths = loom.paths
    if paths is not None:
        for folder in paths.folder_names():
            for name in paths.get_filename_list(folder):
                full = paths.get_full_path(folder, name)
                if full is not None:
                    try:
                        out.append(_File(("models", folder), name.replace(os.sep, "/"), full, os.stat(full)))
                    except OSError:
                        continue
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _asset(f: _File) -> dict[str, Any]:
    name = f.rel.rsplit("/", 1)[-1]
    out: dict[str, Any] = {"id": asset_id(f.tags, f.rel), "name": name, "display_name": name,
                           "size": f.stat.st_size, "mime_type": content_type(name),
                           "tags": list(f.tags), "user_metadata": {"filename": f.rel},
                           "created_at": _iso(f.stat.st_ctime), "updated_at": _iso(f.stat.st_mtime),
                           "last_access_time": _iso(f.stat.st_atime)}
    if f.tags[0] == "models":
        out["loader_path"] = f.rel
    else:
        sub, _, base = f.rel.rpartition("/")
        url = f"/api/view?type={f.tags[0]}&filename={quote(base, safe='')}"
        out["preview_url"] = url + (f"&subfolder={quote(sub, safe='')}" if sub else "")
    return {k: v for k, v in out.items() if v is not None}


def _csv(request: web.Request, key: str) -> list[str]:
    return [t.strip().lower() for raw in request.query.getall(key, []) for t in raw.split(",") if t.strip()]


def _int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}, got {value}")
    return value


def _sort_value(f: _File, sort: str) -> Any:
    if sort == "name":
        return f.rel.rsplit("/", 1)[-1].lower()
    if sort == "size":
        return f.stat.st_size
    return {"created_at": f.stat.st_ctime, "updated_at": f.stat.st_mtime, "last_access_time": f.stat.st_atime}[sort]


async def list_assets(request: web.Request) -> web.Response:
    """Assets with all `include_tags`, none of `exclude_tags`, `name_contains`; sorted, offset-paged."""
    try:
        limit = _int(request, "limit", 20, 1, 500)
        offset = _int(request, "offset", 0, 0, 1 << 62)
    except BadRequest as exc:
        return _error(400, "INVALID_QUERY", exc.message)
    include, exclude = _csv(request, "include_tags"), _csv(request, "exclude_tags")
    needle = (request.query.get("name_contains") or "").lower()
    sort = (request.query.get("sort") or "created_at").lower()
    sort = sort if sort in SORT_KEYS else "created_at"
    descending = (request.query.get("order") or "desc").lower() != "asc"
    files = [f for f in _files(request) if all(t in f.tags for t in include)
             and not any(t in f.tags for t in exclude) and needle in f.rel.rsplit("/", 1)[-1].lower()]
    files.sort(key=lambda f: _sort_value(f, sort), reverse=descending)
    page = files[offset:offset + limit]
    return web.json_response({"assets": [_asset(f) for f in page], "total": len(files),
                              "has_more": offset + len(page) < len(files)})


def _find(request: web.Request) -> _File | None:
    wanted = str(uuid.UUID(request.match_info["id"]))
    return next((f for f in _files(request) if asset_id(f.tags, f.rel) == wanted), None)


async def get_asset(request: web.Request) -> web.Response:
    """One asset's JSON; 404 ASSET_NOT_FOUND."""
    found = _find(request)
    if found is None:
        rid = request.match_info["id"].lower()
        return _error(404, "ASSET_NOT_FOUND", f"AssetReference {rid} not found", {"id": rid})
    return web.json_response(_asset(found))


async def asset_content(request: web.Request) -> web.StreamResponse:
    """The file itself; active content types (HTML, SVG, scripts) always download, never render."""
    found = _find(request)
    if found is None:
        return _error(404, "ASSET_NOT_FOUND", f"AssetReference {request.match_info['id'].lower()} not found")
    disposition = request.query.get("disposition", "attachment").lower().strip()
    disposition = disposition if disposition in ("inline", "attachment") else "attachment"
    name = found.rel.rsplit("/", 1)[-1]
    ctype = content_type(name) or "application/octet-stream"
    if ctype in UNSAFE_MIME:
        ctype, disposition = "application/octet-stream", "attachment"
    return web.FileResponse(found.path, headers={
        "Content-Type": ctype, "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff"})


async def list_tags(request: web.Request) -> web.Response:
    """Tags with their asset counts (`prefix`, `order` count_desc | name_asc, `limit`, `offset`)."""
    try:
        limit = _int(request, "limit", 100, 1, 1000)
        offset = _int(request, "offset", 0, 0, 10_000_000)
    except BadRequest as exc:
        return _error(400, "INVALID_QUERY", exc.message)
    order = request.query.get("order", "count_desc")
    if order not in ("count_desc", "name_asc"):
        return _error(400, "INVALID_QUERY", "order must be 'count_desc' or 'name_asc'")
    prefix = (request.query.get("prefix") or "").strip().lower()
    counts = Counter(t for f in _files(request) for t in f.tags)
    tags = [(n, c) for n, c in counts.items() if n.startswith(prefix)]
    tags.sort(key=(lambda t: (-t[1], t[0])) if order == "count_desc" else (lambda t: t[0]))
    page = tags[offset:offset + limit]
    return web.json_response({"tags": [{"name": n, "count": c} for n, c in page], "total": len(tags),
                              "has_more": offset + len(page) < len(tags)})


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/api/assets", list_assets), ("GET", f"/api/assets/{{id:{UUID_RE}}}", get_asset),
            ("GET", f"/api/assets/{{id:{UUID_RE}}}/content", asset_content), ("GET", "/api/tags", list_tags)]
