"""Read-only information routes: /object_info, /system_stats, /features, /embeddings, /models, /view_metadata."""
from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any

from aiohttp import web

from app.errors import BadRequest, NotFound
from app.routes_ws import server_features
from app.state import loom_of
from engine.safetensors_header import HeaderTooLargeError, SafetensorsHeaderError, read_safetensors_header

__all__ = ["routes", "LOOM_VERSION", "COMFYUI_VERSION", "FRONTEND_VERSION"]

log = logging.getLogger("loom.routes")

LOOM_VERSION = "0.1.0"
COMFYUI_VERSION = "0.8.0"  # the API level Loom is compatible with (spec header)
FRONTEND_VERSION = "1.35.9"
METADATA_HEADER_LIMIT = 1 << 20
EXCLUDED_EXPERIMENT_FOLDERS = {"configs", "custom_nodes"}


async def object_info(request: web.Request) -> web.Response:
    registry = loom_of(request).registry
    return web.json_response(registry.object_info())


async def object_info_one(request: web.Request) -> web.Response:
    registry = loom_of(request).registry
    name = request.match_info["node_class"]
    if name not in registry:
        return web.json_response({})
    return web.json_response(registry.object_info_for(name))


def _ram() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except Exception:
        return 0, 0


def _devices(cpu_only: bool) -> tuple[str, list[dict[str, Any]]]:
    """torch version + device list; torch is only consulted if something already imported it."""
    torch = sys.modules.get("torch")
    total, free = _ram()
    cpu = {"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
           "torch_vram_total": total, "torch_vram_free": free}
    if torch is None:
        return "not loaded", [cpu]
    version = str(getattr(torch, "__version__", "unknown"))
    try:
        if not cpu_only and torch.cuda.is_available():
            idx = torch.cuda.current_device()
            free_b, total_b = torch.cuda.mem_get_info(idx)
            reserved = torch.cuda.memory_reserved(idx)
            allocated = torch.cuda.memory_allocated(idx)
            return version, [{"name": f"cuda:{idx} {torch.cuda.get_device_name(idx)}", "type": "cuda",
                              "index": idx, "vram_total": int(total_b), "vram_free": int(free_b),
                              "torch_vram_total": int(reserved), "torch_vram_free": int(reserved - allocated)}]
    except Exception as exc:
        log.debug("cuda stats unavailable: %s", exc)
    return version, [cpu]


async def system_stats(request: web.Request) -> web.Response:
    loom = loom_of(request)
    total, free = _ram()
    torch_version, devices = _devices(loom.config.cpu)
    return web.json_response({
        "system": {"os": sys.platform, "ram_total": total, "ram_free": free,
                   "comfyui_version": COMFYUI_VERSION, "loom_version": LOOM_VERSION,
                   "required_frontend_version": FRONTEND_VERSION, "installed_templates_version": None,
                   "required_templates_version": None, "python_version": sys.version,
                   "pytorch_version": torch_version, "embedded_python": False, "argv": list(sys.argv),
                   "machine": platform.machine()},
        "devices": devices,
        "workers": _workers(loom),
    })


def _workers(loom: Any) -> list[dict[str, Any]]:
    """Per-worker state beside ComfyUI's fields: the Ray backend reports each actor, else the local thread."""
    backend = getattr(loom, "worker", None)
    stats = getattr(backend, "worker_stats", None)
    if callable(stats):
        return list(stats())
    if backend is None:
        return []
    status = backend.status()
    models = getattr(loom.services, "models", None)
    loaded = getattr(models, "loaded_models", None) if getattr(models, "loaded", True) else None
    return [{"id": "local", "alive": status.alive, "running_prompt": status.running_prompt_id,
             "prompts_done": status.prompts_done, "device": "cpu" if loom.config.cpu else "auto",
             "loaded_models": list(loaded()) if callable(loaded) else []}]


async def features(request: web.Request) -> web.Response:
    return web.json_response(server_features(request))


def _paths(request: web.Request) -> Any:
    paths = loom_of(request).paths
    if paths is None:
        raise NotFound("model folders are not configured on this server", type_="no_model_paths")
    return paths


async def embeddings(request: web.Request) -> web.Response:
    paths = loom_of(request).paths
    if paths is None:
        return web.json_response([])
    names = [os.path.splitext(n)[0].replace(os.sep, "/") for n in paths.get_filename_list("embeddings")]
    return web.json_response(names)


async def models(request: web.Request) -> web.Response:
    paths = loom_of(request).paths
    return web.json_response(list(paths.folder_names()) if paths is not None else [])


async def models_in(request: web.Request) -> web.Response:
    paths = _paths(request)
    folder = request.match_info["folder"]
    if folder not in paths.folder_names():
        raise NotFound(f"unknown model folder {folder!r}", "GET /models lists the folder keys",
                       type_="unknown_folder")
    return web.json_response(sorted(paths.get_filename_list(folder)))


def _resolve_model(paths: Any, folder: str, filename: str) -> str:
    if folder not in paths.folder_names() and paths.canonical_key(folder) not in paths.folder_names():
        raise NotFound(f"unknown model folder {folder!r}", "GET /models lists the folder keys",
                       type_="unknown_folder")
    try:
        full = paths.get_full_path(folder, filename)
    except ValueError as exc:
        raise BadRequest(str(exc), type_="bad_path") from None
    if full is None:
        raise NotFound(f"{folder}/{filename} not found", type_="file_not_found")
    return str(full)


async def view_metadata(request: web.Request) -> web.Response:
    paths = _paths(request)
    folder = request.match_info["folder_name"]
    filename = request.query.get("filename")
    if not filename:
        raise NotFound("GET /view_metadata: query parameter 'filename' is missing", type_="file_not_found")
    if not filename.lower().endswith(".safetensors"):
        raise NotFound(f"{filename!r} is not a .safetensors file", type_="not_safetensors")
    full = _resolve_model(paths, folder, filename)
    try:
        header = read_safetensors_header(full, limit=METADATA_HEADER_LIMIT)
    except HeaderTooLargeError:
        raise NotFound(f"{filename}: safetensors header larger than 1 MiB", type_="no_metadata") from None
    except SafetensorsHeaderError as exc:
        raise NotFound(f"{filename}: not a readable safetensors file ({exc.__cause__ or exc})",
                       type_="no_metadata") from None
    meta = dict(header.metadata)
    if not meta:
        raise NotFound(f"{filename} has no __metadata__", type_="no_metadata")
    return web.json_response(meta)


async def experiment_models(request: web.Request) -> web.Response:
    paths = loom_of(request).paths
    if paths is None:
        return web.json_response([])
    return web.json_response([{"name": k, "folders": paths.get_folder_paths(k)} for k in paths.folder_names()
                              if k not in EXCLUDED_EXPERIMENT_FOLDERS])


async def experiment_models_in(request: web.Request) -> web.Response:
    paths = _paths(request)
    folder = request.match_info["folder"]
    try:
        roots = paths.get_folder_paths(folder)
    except ValueError:
        raise NotFound(f"unknown model folder {folder!r}", type_="unknown_folder") from None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in paths.get_filename_list(folder):
        for index, root in enumerate(roots):
            full = os.path.join(root, name)
            if name not in seen and os.path.isfile(full):
                st = os.stat(full)
                out.append({"name": name.replace(os.sep, "/"), "pathIndex": index, "modified": st.st_mtime,
                            "created": st.st_ctime, "size": st.st_size})
                seen.add(name)
    return web.json_response(out)


async def experiment_model_preview(request: web.Request) -> web.Response:
    # Loom ships no preview thumbnails yet; ComfyUI answers 404 when none is found.
    raise NotFound("no preview image for this model", type_="no_preview")


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/object_info", object_info), ("GET", "/object_info/{node_class}", object_info_one),
        ("GET", "/system_stats", system_stats), ("GET", "/features", features),
        ("GET", "/embeddings", embeddings), ("GET", "/models", models), ("GET", "/models/{folder}", models_in),
        ("GET", "/view_metadata/{folder_name}", view_metadata),
        ("GET", "/experiment/models", experiment_models),
        ("GET", "/experiment/models/{folder}", experiment_models_in),
        ("GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.*}", experiment_model_preview),
    ]
