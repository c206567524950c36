"""/users, /settings, /userdata, /v2/userdata (spec 1.10), single-user mode (user id `default`)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from app.errors import BadRequest, Conflict, NotFound, read_json
from app.safe_paths import check_relative, confine
from app.state import loom_of

__all__ = ["routes", "DEFAULT_USER"]

DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"


def _user_root(request: web.Request) -> Path:
    return loom_of(request).config.user_dir / DEFAULT_USER


def _settings_path(request: web.Request) -> Path:
    return _user_root(request) / SETTINGS_FILE


def _read_settings(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(_settings_path(request).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_settings(request: web.Request, settings: dict[str, Any]) -> None:
    path = _settings_path(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings, indent=4), encoding="utf-8")
    os.replace(tmp, path)


async def get_users(request: web.Request) -> web.Response:
    return web.json_response({"storage": "server", "migrated": _user_root(request).is_dir()})


async def post_users(request: web.Request) -> web.Response:
    raise BadRequest("POST /users: Loom runs in single-user mode", "multi-user storage is not supported",
                     type_="single_user")


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(_read_settings(request))


async def get_setting(request: web.Request) -> web.Response:
    return web.json_response(_read_settings(request).get(request.match_info["id"]))


async def post_settings(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("POST /settings: the body must be a JSON object of settings", type_="invalid_json")
    settings = _read_settings(request)
    settings.update(body)
    _write_settings(request, settings)
    return web.Response(status=200)


async def post_setting(request: web.Request) -> web.Response:
    key = request.match_info["id"]
    if not key:
        raise BadRequest("POST /settings/{id}: the id is empty", type_="bad_setting")
    value = await read_json(request)
    settings = _read_settings(request)
    settings[key] = value
    _write_settings(request, settings)
    return web.Response(status=200)


def _user_path(request: web.Request, rel: str, what: str) -> Path:
    rel = unquote(rel)
    if not rel:
        raise BadRequest(f"{what}: the file name is empty", type_="bad_path")
    check_relative(rel, what)
    root = _user_root(request)
    root.mkdir(parents=True, exist_ok=True)
    return confine(root, rel, what=what)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    return default if raw is None else raw.lower() in ("true", "1", "yes")


def _info(root: Path, path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": st.st_size, "modified": st.st_mtime,
            "created": st.st_ctime}


async def list_userdata(request: web.Request) -> web.Response:
    rel = request.query.get("dir")
    if not rel:
        raise BadRequest("GET /userdata: query parameter 'dir' is missing", "e.g. ?dir=workflows",
                         type_="bad_query")
    folder = _user_path(request, rel, "GET /userdata: dir")
    if not folder.is_dir():
        raise NotFound(f"GET /userdata: folder {rel!r} does not exist", type_="file_not_found")
    recurse, full, split = _flag(request, "recurse", False), _flag(request, "full_info", False), \
        _flag(request, "split", True)
    files = sorted(p for p in (folder.rglob("*") if recurse else folder.glob("*")) if p.is_file())
    root_real = Path(os.path.realpath(folder))
    out: list[Any] = []
    for p in files:
        if os.path.commonpath([str(root_real), os.path.realpath(p)]) != str(root_real):
            continue  # a symlink out of the user folder: not listed
        relp = p.relative_to(folder).as_posix()
        if full:
            out.append(_info(folder, p))
        elif split:
            out.append([relp, *relp.split("/")])
        else:
            out.append(relp)
    return web.json_response(out)


async def list_userdata_v2(request: web.Request) -> web.Response:
    root = _user_root(request)
    rel = request.query.get("path", "")
    if not root.is_dir():
        return web.json_response([])
    folder = confine(root, check_relative(rel, "GET /v2/userdata: path"), what="GET /v2/userdata: path")
    if not folder.exists():
        raise NotFound(f"GET /v2/userdata: {rel!r} does not exist", type_="file_not_found")
    if not folder.is_dir():
        raise BadRequest(f"GET /v2/userdata: {rel!r} is not a folder", type_="not_a_directory")
    out: list[dict[str, Any]] = []
    for p in folder.rglob("*"):
        entry: dict[str, Any] = {"name": p.name, "path": p.relative_to(root).as_posix(),
                                 "type": "directory" if p.is_dir() else "file"}
        if p.is_file():
            st = p.stat()
            entry.update(size=st.st_size, modified=st.st_mtime)
        out.append(entry)
    out.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
    return web.json_response(out)


async def get_userdata(request: web.Request) -> web.StreamResponse:
    path = _user_path(request, request.match_info["file"], "GET /userdata/{file}")
    if not path.is_file():
        raise NotFound(f"GET /userdata: {request.match_info['file']!r} does not exist", type_="file_not_found")
    return web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})


async def post_userdata(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    path = _user_path(request, name, "POST /userdata/{file}")
    if path.exists() and not _flag(request, "overwrite", True):
        raise Conflict(f"POST /userdata: {name!r} exists", "pass ?overwrite=true to replace it",
                       type_="file_exists")
    body = await request.read()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    except OSError as exc:
        raise BadRequest(f"POST /userdata: cannot write {name!r}: {exc.strerror}", type_="bad_path") from None
    root = _user_root(request)
    return web.json_response(_info(root, path) if _flag(request, "full_info", False)
                             else path.relative_to(root).as_posix())


async def delete_userdata(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    path = _user_path(request, name, "DELETE /userdata/{file}")
    if not path.is_file():
        raise NotFound(f"DELETE /userdata: {name!r} does not exist", type_="file_not_found")
    path.unlink()
    return web.Response(status=204)


async def move_userdata(request: web.Request) -> web.Response:
    src = _user_path(request, request.match_info["file"], "POST /userdata/{file}/move: source")
    dest = _user_path(request, request.match_info["dest"], "POST /userdata/{file}/move: destination")
    if not src.is_file():
        raise NotFound(f"move: source {request.match_info['file']!r} does not exist", type_="file_not_found")
    if dest.exists() and not _flag(request, "overwrite", True):
        raise Conflict(f"move: destination {request.match_info['dest']!r} exists",
                       "pass ?overwrite=true to replace it", type_="file_exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dest))
    root = _user_root(request)
    return web.json_response(_info(root, dest) if _flag(request, "full_info", False)
                             else dest.relative_to(root).as_posix())


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/users", get_users), ("POST", "/users", post_users),
        ("GET", "/settings", get_settings), ("POST", "/settings", post_settings),
        ("GET", "/settings/{id}", get_setting), ("POST", "/settings/{id}", post_setting),
        ("GET", "/userdata", list_userdata), ("GET", "/v2/userdata", list_userdata_v2),
        ("GET", "/userdata/{file}", get_userdata), ("POST", "/userdata/{file}", post_userdata),
        ("DELETE", "/userdata/{file}", delete_userdata),
        ("POST", "/userdata/{file}/move/{dest}", move_userdata),
    ]
