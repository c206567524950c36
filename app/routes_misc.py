"""Frontend boot routes: /extensions, /i18n, /workflow_templates, /global_subgraphs, /openapi.json (spec 1.9, 1.11)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from app.errors import NotFound
from app.safe_paths import confine
from app.state import EXTRA_ROUTES, WEB_ROOT, loom_of

__all__ = ["routes", "web_directories", "TEMPLATE_FOLDERS"]

log = logging.getLogger("loom.routes")

TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")


def web_directories(request: web.Request) -> dict[str, Path]:
    """Custom node web directories by pack name (from the custom node loader's reports)."""
    out: dict[str, Path] = {}
    for report in loom_of(request).custom_node_report:
        wd = getattr(report, "web_directory", None)
        name = getattr(report, "name", None)
        if wd and name and Path(wd).is_dir():
            out[str(name)] = Path(wd)
    return out


def _pack_dirs(request: web.Request) -> list[Path]:
    cfg = loom_of(request).config
    if cfg.disable_all_custom_nodes:
        return []
    dirs: list[Path] = []
    for folder in cfg.custom_nodes_dirs:
        if folder.is_dir():
            dirs += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    return dirs


async def extensions(request: web.Request) -> web.Response:
    urls: list[str] = []
    root = request.app[WEB_ROOT]
    if root is not None and (Path(root) / "extensions").is_dir():
        base = Path(root)
        urls += ["/" + p.relative_to(base).as_posix() for p in sorted((base / "extensions").rglob("*.js"))]
    for name, folder in web_directories(request).items():
        urls += [f"/extensions/{quote(name)}/{p.relative_to(folder).as_posix()}"
                 for p in sorted(folder.rglob("*.js"))]
    return web.json_response(urls)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


async def i18n(request: web.Request) -> web.Response:
    out: dict[str, Any] = {}
    for pack in _pack_dirs(request):
        locales = pack / "locales"
        if not locales.is_dir():
            continue
        for lang in sorted(p for p in locales.iterdir() if p.is_dir()):
            bucket = out.setdefault(lang.name, {})
            for fname, key in (("main.json", None), ("nodeDefs.json", "nodeDefs"), ("commands.json", "commands"),
                               ("settings.json", "settings")):
                try:
                    data = json.loads((lang / fname).read_text(encoding="utf-8"))
                except FileNotFoundError:
                    continue
                except (OSError, ValueError) as exc:
                    log.warning("%s: ignored (%s)", lang / fname, exc)
                    continue
                if isinstance(data, dict):
                    _merge(bucket, data if key is None else {key: data})
    return web.json_response(out)


async def workflow_templates(request: web.Request) -> web.Response:
    out: dict[str, list[str]] = {}
    for pack in _pack_dirs(request):
        for sub in TEMPLATE_FOLDERS:
            folder = pack / sub
            if folder.is_dir():
                names = sorted(p.stem for p in folder.glob("*.json"))
                if names:
                    out[pack.name] = names
                    break
    return web.json_response(out)


def _template_folder(request: web.Request, pack: str) -> Path | None:
    for folder in _pack_dirs(request):
        if folder.name == pack:
            return next((folder / sub for sub in TEMPLATE_FOLDERS if (folder / sub).is_dir()), None)
    return None


async def workflow_template_file(request: web.Request) -> web.StreamResponse:
    """A file of a custom node pack's template folder (ComfyUI serves these folders statically)."""
    pack, rel = request.match_info["pack"], request.match_info["path"]
    folder = _template_folder(request, pack)
    if folder is None:
        raise NotFound(f"custom node pack {pack!r} has no workflow templates", "GET /workflow_templates lists them",
                       type_="file_not_found")
    path = confine(folder, rel, what="template file")
    if not path.is_file():
        raise NotFound(f"template file {pack}/{rel} not found", type_="file_not_found")
    return web.FileResponse(path)


def _subgraphs(request: web.Request) -> dict[str, tuple[dict[str, Any], Path]]:
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for pack in _pack_dirs(request):
        folder = pack / "subgraphs"
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.json")):
            sid = hashlib.sha256(f"{pack.name}/{f.name}".encode()).hexdigest()
            found[sid] = ({"source": "custom_node", "name": f.stem,
                           "info": {"node_pack": f"custom_nodes.{pack.name}"}}, f)
    return found


async def global_subgraphs(request: web.Request) -> web.Response:
    return web.json_response({k: v for k, (v, _) in _subgraphs(request).items()})


async def global_subgraph(request: web.Request) -> web.Response:
    found = _subgraphs(request).get(request.match_info["id"])
    if found is None:
        return web.json_response(None)
    info, path = found
    return web.json_response({**info, "data": path.read_text(encoding="utf-8", errors="replace")})


async def openapi(request: web.Request) -> web.Response:
    from app.openapi import openapi_document

    return web.json_response(openapi_document(request.app.get(EXTRA_ROUTES, [])))


async def node_replacements(request: web.Request) -> web.Response:
    """ComfyUI's node replacement table (old node id -> replacements); Loom registers none."""
    return web.json_response({})


def routes() -> list[tuple[str, str, Any]]:
    from app import routes_assets, templates

    return [
        ("GET", "/extensions", extensions), ("GET", "/i18n", i18n),
        ("GET", "/workflow_templates", workflow_templates),
        ("GET", "/workflow_templates/{pack}/{path:.+}", workflow_template_file),
        ("GET", "/global_subgraphs", global_subgraphs), ("GET", "/global_subgraphs/{id}", global_subgraph),
        ("GET", "/openapi.json", openapi), ("GET", "/node_replacements", node_replacements),
        *templates.routes(), *routes_assets.routes(),
    ]
