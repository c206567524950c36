"""Workflow templates: ComfyUI's `/templates/...` (from the optional `comfyui-workflow-templates` package, as in
ComfyUI v0.4x) and Loom's own template browser list, `GET /loom/templates`.

The browser lists the repository's `workflows/` and, where the package is installed, its templates, and marks
each one whose node types this server lacks or whose model files are not in its model folders.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from app.errors import NotFound
from app.safe_paths import check_name, confine
from app.state import loom_of
from app.workflow_format import VIRTUAL_NODES

__all__ = ["routes", "TemplateLibrary", "requirements", "Requirements", "WORKFLOWS_DIR"]

log = logging.getLogger("loom.templates")

WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".pt2")
# The package ComfyUI imports, then the helper package it re-exports (either one has the manifest API).
PACKAGES = ("comfyui_workflow_templates", "comfyui_workflow_templates_core")


@dataclass(frozen=True)
class Requirements:
    """What a workflow needs from the server: node types and (folder or None, file name) model files."""

    node_types: frozenset[str]
    models: frozenset[tuple[str | None, str]]


def _editor_nodes(graph: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from (n for n in graph.get("nodes") or [] if isinstance(n, dict))
    for sub in ((graph.get("definitions") or {}).get("subgraphs") or []):
        if isinstance(sub, dict):
            yield from (n for n in sub.get("nodes") or [] if isinstance(n, dict))


def requirements(doc: Any) -> Requirements:
    """Node types and model files of an editor workflow or an API prompt (subgraph and UI-only nodes left out)."""
    types: set[str] = set()
    models: set[tuple[str | None, str]] = set()
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), list):
        subgraph_ids = {s.get("id") for s in ((doc.get("definitions") or {}).get("subgraphs") or [])
                        if isinstance(s, dict)}
        for node in _editor_nodes(doc):
            kind = node.get("type")
            if isinstance(kind, str) and kind not in VIRTUAL_NODES and kind not in subgraph_ids:
                types.add(kind)
            raw_props = node.get("properties")
            props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
            declared = [m for m in props.get("models") or [] if isinstance(m, dict) and isinstance(m.get("name"), str)]
            models.update((m.get("directory") if isinstance(m.get("directory"), str) else None, m["name"])
                          for m in declared)
            if not declared:
                values = node.get("widgets_values")
                models.update((None, v) for v in (values if isinstance(values, list) else [])
                              if isinstance(v, str) and v.lower().endswith(MODEL_EXTENSIONS))
    elif isinstance(doc, dict):
        for node in doc.values():
            if isinstance(node, dict) and isinstance(node.get("class_type"), str):
                types.add(node["class_type"])
                raw_inputs = node.get("inputs")
                inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
                models.update((None, v) for v in inputs.values()
                              if isinstance(v, str) and v.lower().endswith(MODEL_EXTENSIONS))
    return Requirements(frozenset(types), frozenset(models))


@dataclass
class TemplateLibrary:
    """The installed templates package (if any): asset file name -> path, and `index.json`'s templates."""

    assets: dict[str, str] = field(default_factory=dict)
    package: str | None = None
    _needs: dict[str, tuple[float, Requirements]] = field(default_factory=dict)

    @staticmethod
    def discover(importer: Callable[[str], Any] = importlib.import_module) -> TemplateLibrary:
        """Map every template asset whose file is installed (a media bundle may be missing: its files are)."""
        for name in PACKAGES:
            try:
                mod = importer(name)
            except ImportError:
                continue
            assets: dict[str, str] = {}
            for entry in mod.iter_templates():
                for asset in entry.assets:
                    try:
                        path = mod.get_asset_path(entry.template_id, asset.filename)
                    except (FileNotFoundError, KeyError, ModuleNotFoundError):
                        continue
                    if os.path.isfile(path):
                        assets[asset.filename] = path
            return TemplateLibrary(assets, name)
        return TemplateLibrary()

    def needs(self, path: str) -> Requirements | None:
        """A workflow file's requirements, cached per modification time; None if it is not readable JSON."""
        try:
            mtime = os.stat(path).st_mtime
            cached = self._needs.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            with open(path, encoding="utf-8") as f:
                req = requirements(json.load(f))
        except (OSError, ValueError) as exc:
            log.debug("template %s unreadable: %s", path, exc)
            return None
        self._needs[path] = (mtime, req)
        return req


_LIBRARY: web.AppKey[dict[str, TemplateLibrary]] = web.AppKey("loom_templates")


async def _library(request: web.Request) -> TemplateLibrary:
    box = request.app.get(_LIBRARY)
    if box is None:
        box = {}
        request.app[_LIBRARY] = box
    if "lib" not in box:
        box["lib"] = await asyncio.get_running_loop().run_in_executor(None, TemplateLibrary.discover)
    return box["lib"]


async def template_file(request: web.Request) -> web.StreamResponse:
    """ComfyUI's `/templates/{path}`: a file of the installed templates package (404 when not installed)."""
    rel = request.match_info["path"]
    target = (await _library(request)).assets.get(rel)
    if target is None:
        raise NotFound(f"template file {rel!r} not found",
                       "install ComfyUI's templates: pip install comfyui-workflow-templates", type_="file_not_found")
    return web.FileResponse(target)


def _missing(request: web.Request, req: Requirements) -> dict[str, list[str]]:
    loom = loom_of(request)
    nodes = sorted(t for t in req.node_types if t not in loom.registry)
    paths = loom.paths
    models: list[str] = []
    if paths is not None:
        folders = paths.folder_names()
        for folder, name in sorted(req.models, key=lambda m: (m[0] or "", m[1])):
            where = [folder] if folder in folders else folders
            if not any(paths.get_full_path(f, name) for f in where):
                models.append(f"{folder}/{name}" if folder else name)
    return {"missing_nodes": nodes, "missing_models": models}


def _package_entries(lib: TemplateLibrary) -> list[dict[str, Any]]:
    index = lib.assets.get("index.json")
    if index is None:
        return []
    try:
        with open(index, encoding="utf-8") as f:
            categories = json.load(f)
    except (OSError, ValueError):
        return []
    out: list[dict[str, Any]] = []
    for cat in categories if isinstance(categories, list) else []:
        for t in (cat.get("templates") or []) if isinstance(cat, dict) else []:
            if isinstance(t, dict) and isinstance(t.get("name"), str) and f"{t['name']}.json" in lib.assets:
                out.append({"source": "templates", "name": t["name"], "title": t.get("title") or t["name"],
                            "category": cat.get("title") or cat.get("category") or "",
                            "description": t.get("description") or "", "url": f"/templates/{t['name']}.json",
                            "_path": lib.assets[f"{t['name']}.json"]})
    return out


def _workflow_entries() -> list[dict[str, Any]]:
    if not WORKFLOWS_DIR.is_dir():
        return []
    out = []
    for p in sorted(WORKFLOWS_DIR.glob("*.json")):
        ui = p.name.endswith(".ui.json")
        stem = p.name[: -len(".ui.json")] if ui else p.stem
        out.append({"source": "workflows", "name": p.name, "title": stem + (" (editor)" if ui else " (API)"),
                    "category": "Loom examples", "description": "", "url": f"/loom/workflows/{p.name}",
                    "_path": str(p)})
    return out


async def list_templates(request: web.Request) -> web.Response:
    """Loom's template browser: `{"templates": [{source, name, title, category, description, url, missing_nodes,
    missing_models, available}], "package": name or null}`."""
    lib = await _library(request)
    entries = _workflow_entries() + _package_entries(lib)
    loop = asyncio.get_running_loop()
    reqs = await loop.run_in_executor(None, lambda: [lib.needs(e["_path"]) for e in entries])
    out = []
    for entry, req in zip(entries, reqs, strict=True):
        entry = {k: v for k, v in entry.items() if k != "_path"}
        missing = _missing(request, req) if req is not None else {"missing_nodes": [], "missing_models": []}
        out.append({**entry, **missing, "readable": req is not None,
                    "available": req is not None and not missing["missing_nodes"] and not missing["missing_models"]})
    return web.json_response({"templates": out, "package": lib.package})


async def workflow_file(request: web.Request) -> web.StreamResponse:
    """One example workflow of the repository's `workflows/` folder."""
    name = check_name(request.match_info["name"], "workflow")
    path = confine(WORKFLOWS_DIR, name, what="workflow")
    if path.suffix != ".json" or not path.is_file():
        raise NotFound(f"workflow {name!r} not found", "GET /loom/templates lists them", type_="file_not_found")
    return web.FileResponse(path)


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/templates/{path:.+}", template_file), ("GET", "/loom/templates", list_templates),
            ("GET", "/loom/workflows/{name}", workflow_file)]
