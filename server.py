"""Loom's HTTP + websocket entry point: `create_app(loom) -> aiohttp Application` and `main(argv)`.

Handlers live in `app/routes_*.py`; this module only assembles them. Custom node packs that do
`import server` get ComfyUI's `PromptServer` from here (`server.PromptServer.instance`).
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import re
import secrets
import shutil
import sys
import threading
import time
import uuid  # noqa: F401 - packs call `server.uuid.uuid4()` (ComfyUI's server module imports it)
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from app.compat.prompt_server import BinaryEventTypes, PromptServer  # `import server` in packs
from app.config import Config, ConfigError, parse_args
from app.errors import error_middleware
from app.logbuffer import LogRing
from app.loom import Loom, build_loom
from app.security import make_security_middlewares
from app.state import EXTRA_ROUTES, LOG_RING, LOOM, PROMPT_SERVER, WEB_ROOT, Handler
from app.static import find_web_root

__all__ = ["create_app", "main", "route_table", "PromptServer", "BinaryEventTypes"]

log = logging.getLogger("loom.server")
REPO_ROOT = Path(__file__).resolve().parent
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".svg", ".ico", ".bmp")


@web.middleware
async def cache_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ComfyUI's cache-control rules (spec 1.1), plus a `Server-Timing` header (handler time)."""
    t0 = time.perf_counter()
    resp = await handler(request)
    if not resp.prepared:
        resp.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.2f}"
    path = request.path
    last = path.rsplit("/", 1)[-1]
    if path.endswith((".js", ".css")) or (last.startswith("index") and last.endswith(".json")):
        resp.headers.setdefault("Cache-Control", "no-cache")
    elif path.lower().endswith(IMAGE_EXTS):
        resp.headers.setdefault("Cache-Control", "public, max-age=86400" if resp.status < 400
                                else "public, max-age=3600")
    return resp


def route_table() -> list[tuple[str, str, Handler, bool]]:
    """Every dynamic route as (method, path, handler, also_under_api)."""
    from app import (
        routes_custom_nodes,
        routes_files,
        routes_info,
        routes_internal,
        routes_jobs,
        routes_misc,
        routes_prompt,
        routes_user,
        routes_ws,
    )

    rows: list[tuple[str, str, Handler, bool]] = []
    for mod in (routes_prompt, routes_info, routes_files, routes_user, routes_misc, routes_ws, routes_jobs,
                routes_custom_nodes):
        rows += [(m, p, h, True) for m, p, h in mod.routes()]
    rows += [(m, p, h, False) for m, p, h in routes_internal.routes()]
    return rows


def _doc_path(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def _load_custom_nodes(loom: Loom, ps: PromptServer) -> None:
    """Load the configured pack folders with `ps` as their `server.PromptServer` (the pack host)."""
    if loom.config.disable_all_custom_nodes:
        return
    from app.custom_nodes import load_custom_nodes

    folders = [d for d in loom.config.custom_nodes_dirs if d.is_dir()]
    if folders:
        # Packs import torch at import time; torch imported by two threads at once fails half-initialised
        # ("RpcBackendOptions already defined"), so the preload thread finishes first.
        for thread in threading.enumerate():
            if thread.name == _PRELOAD_THREAD:
                thread.join()
        loom.custom_node_report = load_custom_nodes(
            loom.registry, folders, ps, base_dir=loom.config.base_directory, paths=loom.paths,
            models=loom.engine.models, config=loom.config, interrupt=loom.interrupt_flag)


def create_app(loom: Loom, *, web_root: Path | None | str = "auto", load_custom_nodes: bool = True,
               start_worker: bool = True) -> web.Application:
    """The aiohttp application serving `loom`: routes bare and under /api, /ws, static editor files."""
    from app import routes_static

    config = loom.config
    if not config.loopback_only and not config.auth_required:
        raise ConfigError(f"--listen {','.join(config.listen)} reaches beyond this machine: give --auth-token "
                          "(main() generates one), or listen on 127.0.0.1")
    app = web.Application(client_max_size=config.max_upload_bytes,
                          middlewares=[error_middleware, *make_security_middlewares(config), cache_headers])
    app[LOOM] = loom
    app[WEB_ROOT] = find_web_root(config, REPO_ROOT) if web_root == "auto" else \
        Path(web_root) if isinstance(web_root, str) else web_root
    ps = PromptServer(loom, app, loom.hub)
    loom.on_prompt_handlers.append(ps.trigger_on_prompt)
    app[PROMPT_SERVER] = ps
    app[LOG_RING] = LogRing(loom.hub)
    if load_custom_nodes:
        _load_custom_nodes(loom, ps)
    for method, path, handler, api in route_table():
        app.router.add_route(method, path, handler)
        if api:
            app.router.add_route(method, "/api" + path, handler)
    core = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    ps.add_routes_to(app)
    app[EXTRA_ROUTES] = [(r.method, _doc_path(r.resource.canonical), (r.handler.__doc__ or "").strip()
                          .split("\n")[0]) for r in app.router.routes()
                         if r.resource is not None and r.method != "HEAD"
                         and (r.method, r.resource.canonical) not in core]
    routes_static.add_static_routes(app, loom)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loom.hub.bind(asyncio.get_running_loop())
        app[LOG_RING].install()
        if start_worker:
            loom.backend.start()
        yield
        app[LOG_RING].uninstall()
        await asyncio.get_running_loop().run_in_executor(None, loom.backend.stop)
        await loom.hub.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _announce(config: Config, generated: bool) -> None:
    host = config.listen[0]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{config.port}/"
    print(f"Loom listening on {', '.join(config.listen)} port {config.port}: {url}", flush=True)
    if config.auth_token and generated:
        print(f"Access token (printed once): {config.auth_token}\n"
              f"Open {url}?token={config.auth_token} or send 'Authorization: Bearer <token>'.", flush=True)


# What the first prompt needs that the server itself does not: torch (1-2 s to import), model detection
# (validation reads checkpoint headers through it), the loaders, samplers and tokenizer (transformers' CLIP
# tokenizer: ~1 s to import, plus the BPE files' parse), and the skeletons of SD1.5's networks
# (engine.meta_build: the first checkpoint load then skips ~60 ms of module construction). The HTTP side never
# imports torch, so this runs in a background thread while the server starts; whoever needs a module first
# simply waits on Python's import lock (or the skeleton / tokenizer cache's lock).
_PRELOAD = ("torch", "engine.detect", "engine.meta_build", "engine.loading", "engine.sampling", "engine.tokenizer")


_PRELOAD_THREAD = "loom-preload"


def _preload_ml_modules() -> threading.Thread:
    """Import `_PRELOAD` and build SD1.5's skeletons in a daemon thread (failures are left for the code that
    needs the module to report)."""

    def run() -> None:
        try:
            for name in _PRELOAD:
                importlib.import_module(name)
            importlib.import_module("engine.meta_build").prewarm_skeletons()
            importlib.import_module("engine.tokenizer").prewarm_default_bpe()
        except Exception as exc:  # noqa: BLE001 - reported again, with context, where it is used
            log.debug("preloading failed: %s", exc)
        # What is loaded now (torch, the engine, the node registry: ~190k objects) lives as long as the
        # process. Out of the collector's sight, a full collection (the worker's periodic one, Python's own
        # generation-2 passes) scans only what came later: 75-80 ms holding the GIL -> ~0 ms, a stall every
        # request in flight would otherwise wait out (bench/server.py p99).
        gc.freeze()

    thread = threading.Thread(target=run, name=_PRELOAD_THREAD, daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    """`python server.py [flags]`: parse flags, build Loom, serve until interrupted."""
    t0 = time.perf_counter()
    try:
        config = parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"server.py: error: {exc}", file=sys.stderr)
        return 2
    _preload_ml_modules()
    logging.basicConfig(level=getattr(logging, config.verbose, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generated = False
    if not config.loopback_only and not config.auth_token:
        config = config.with_changes(auth_token=secrets.token_urlsafe(24))
        generated = True
    # The worker thread holds the GIL while Python-heavy nodes run; a shorter switch interval keeps the
    # event loop's request latency low (the default 5 ms is paid again after every socket syscall).
    sys.setswitchinterval(0.001)
    shutil.rmtree(config.temp_dir, ignore_errors=True)  # ComfyUI: temp/ is emptied at start and exit
    # As in ComfyUI, the server's event loop exists before packs are imported: packs call
    # asyncio.get_event_loop() at import time and expect the loop the server will run.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loom = build_loom(config)
    except ConfigError as exc:  # e.g. --ray-address unreachable (app.cluster.connect.ClusterError)
        print(f"server.py: error: {exc}", file=sys.stderr)
        return 2
    loom.started_at = time.time()
    app = create_app(loom)
    log.info("ready in %.2f s (%d node types)", time.perf_counter() - t0, len(loom.registry.names()))
    _announce(config, generated)
    try:
        # Per-request access lines only with --verbose DEBUG (ComfyUI prints none; polling clients flood them).
        access_log = logging.getLogger("aiohttp.access") if config.verbose == "DEBUG" else None
        web.run_app(app, host=list(config.listen), port=config.port, print=None, handle_signals=True,
                    access_log=access_log, loop=loop)
    finally:
        loom.close()
        shutil.rmtree(config.temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
