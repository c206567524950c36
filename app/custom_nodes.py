"""Discovery and loading of custom node packs (ComfyUI-style) from custom_nodes/ folders.

Each pack (a package directory with `__init__.py`, or a single `.py` file) is imported under its own module
name `custom_nodes.<pack>` (no `sys.path` edits, so two packs with a same-named `utils.py` each get their
own file through relative imports). Its `NODE_CLASS_MAPPINGS` (or V3 `comfy_entrypoint`) are checked and
registered node by node: a node id already taken by a built-in or an earlier pack is refused and reported
naming both; an invalid node is refused with the reason; a pack that fails to import is skipped. Nothing a
pack does can stop the server from starting: every outcome is a `PackReport` (JSON-able).
"""
from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from app.compat._discovery import (
    PACKAGE_ROOT,
    PackEntry,
    custom_node_folders,
    discover_packs,
    web_directory_of,
    with_model_path_folders,
)
from app.compat._environment import CompatEnvironment, LoomHandles
from app.compat._node_checks import InvalidNodeError, check_node_class, run_entrypoint
from app.compat._pack_import import import_hint, import_pack, run_prestartup_script, watch_sys_path
from app.compat._pip_guard import block_installs
from app.config import Config
from app.state import WEB_ROOT

if TYPE_CHECKING:
    from app.compat.prompt_server import PromptServer
    from engine.lazy_models import LazyModelManager
    from engine.paths import ModelPaths
    from executor import InterruptFlag, NodeRegistry

__all__ = [
    "PackReport",
    "PackEntry",
    "load_custom_nodes",
    "discover_packs",
    "custom_node_folders",
    "web_directories",
    "extension_urls",
    "format_import_times",
    "load_pack_for_test",
]

log = logging.getLogger("loom.custom_nodes")


@dataclass
class PackReport:
    """What happened to one pack.

    `status`: loaded (all nodes registered) | partial (some refused) | refused (every node refused) |
    failed (import or mappings failed; nothing registered) | disabled (`*.disabled`, whitelist).
    """

    name: str
    module: str
    path: str
    status: str = "pending"
    seconds: float = 0.0
    nodes: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    web_directory: str | None = None
    pip_attempts: list[str] = field(default_factory=list)
    routes_added: int = 0
    legacy_web_files: list[str] = field(default_factory=list)
    prestartup: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for HTTP (`/loom/custom_nodes`) and logs."""
        return asdict(self)


def load_custom_nodes(
    registry: NodeRegistry,
    folders: list[Path],
    prompt_server: PromptServer,
    *,
    base_dir: Path | None = None,
    paths: ModelPaths | None = None,
    models: LazyModelManager | None = None,
    config: Config | None = None,
    interrupt: InterruptFlag | None = None,
    environment: CompatEnvironment | None = None,
    disable_all: bool = False,
    whitelist: Collection[str] = (),
    run_prestartup: bool = True,
    model_path_folders: bool = True,
    installed_packs: bool = True,
) -> list[PackReport]:
    """Import every pack in `folders`, register its nodes on `registry`, and report per pack.

    `prompt_server` is the pack host: the `server.PromptServer` packs see (the server's, or a headless
    `PromptServer(None, None, None)` that collects routes and drops messages). `paths`, `models`, `config`
    and `interrupt` are the Loom objects the ComfyUI module view adapts (any may be None in tests).
    With `installed_packs`, packs installed with pip that declare a `comfyui.custom_nodes` (or
    `comfyui_legacy.custom_nodes`) entry point are loaded too.
    With `model_path_folders`, the `custom_nodes` roots of Loom's ModelPaths (`<base>/custom_nodes` and
    `custom_nodes:` entries of extra_model_paths.yaml) are searched after `folders`.
    The ComfyUI module view (`folder_paths`, `comfy.*`, `nodes`, `server`, ...) is installed first and stays
    installed (packs import those names lazily at run time); pass `environment` to control its lifetime.
    """
    if environment is None:
        if base_dir is None:
            base_dir = config.base_directory if config is not None else Path.cwd()
        handles = LoomHandles(registry=registry, base_dir=Path(base_dir), paths=paths, models=models,
                              config=config, interrupt=interrupt)
        environment = CompatEnvironment(handles)
    handles = environment.handles
    handles.prompt_server = prompt_server
    environment.install()
    prompt_server.compat_environment = environment  # so its owner can uninstall it
    _ensure_parent_package()

    if isinstance(handles.config, Config):
        disable_all = disable_all or handles.config.disable_all_custom_nodes
    if model_path_folders:
        folders = with_model_path_folders(folders, handles.paths)
    found = discover_packs(folders, disable_all=disable_all, whitelist=whitelist, installed=installed_packs)
    entries = [e for e in found if e.disabled is None]
    reports = [PackReport(e.name, e.module, str(e.path), status="disabled", error=e.disabled)
               for e in found if e.disabled is not None]
    if run_prestartup:
        prestartup = {e.module: run_prestartup_script(e.module, e.path) for e in entries}
    legacy_web_root = Path(handles.base_dir) / "web" / "extensions"
    served_root = _served_extensions_root(prompt_server)
    for entry in entries:
        report = _load_pack(entry, registry, prompt_server, legacy_web_root, handles, served_root)
        if run_prestartup:
            report.prestartup = prestartup[entry.module]
        reports.append(report)
    log.info("%s", format_import_times(reports))
    return reports


def _ensure_parent_package() -> None:
    if PACKAGE_ROOT not in sys.modules:
        parent = ModuleType(PACKAGE_ROOT, "Namespace of loaded custom node packs.")
        parent.__path__ = []
        sys.modules[PACKAGE_ROOT] = parent


def _files_under(root: Path) -> dict[str, tuple[int, int]]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def _adopt_legacy_web(report: PackReport, legacy_web_root: Path, served_root: Path | None) -> None:
    # An old pack copies its JS into ComfyUI's web/extensions/<folder>; unless the editor already serves
    # that folder, serve it as the pack's web directory (at /extensions/<pack>/).
    if report.web_directory is not None or legacy_web_root.resolve() == served_root:
        return
    tops = {f.split("/")[0] for f in report.legacy_web_files if "/" in f}
    folder = legacy_web_root / (tops.pop() if len(tops) == 1 else report.name)
    if folder.is_dir():
        report.web_directory = str(folder.resolve())


def _added_web_directory(added: dict[str, str], pack: str) -> str | None:
    """The folder a pack put in `nodes.EXTENSION_WEB_DIRS` under its own name (or its only entry), served as
    its web directory."""
    folder = added.get(pack) or (next(iter(added.values())) if len(added) == 1 else None)
    return str(Path(folder).resolve()) if folder and Path(folder).is_dir() else None


def _served_extensions_root(prompt_server: PromptServer) -> Path | None:
    app = prompt_server.app
    if app is None:
        return None
    root = app.get(WEB_ROOT)
    return (Path(root) / "extensions").resolve() if root else None


def _load_pack(entry: PackEntry, registry: NodeRegistry, prompt_server: PromptServer, legacy_web_root: Path,
               handles: LoomHandles, served_root: Path | None) -> PackReport:
    report = PackReport(entry.name, entry.module, str(entry.path))
    routes = prompt_server.routes
    routes_before = len(routes)
    web_before = _files_under(legacy_web_root)
    path_added: list[str] = []
    started = time.perf_counter()
    # Old packs also add nodes with `nodes.NODE_CLASS_MAPPINGS[...] = cls`; the proxy collects them here.
    pending: dict[str, Any] = {}
    pending_display: dict[str, str] = {}
    handles.extra["pending_mappings"] = pending
    handles.extra["pending_display"] = pending_display
    web_dirs: dict[str, str] = handles.extra.setdefault("extension_web_dirs", {})
    web_dirs_before = dict(web_dirs)
    try:
        allow_installs = isinstance(handles.config, Config) and handles.config.allow_pack_installs
        with block_installs(report.pip_attempts, allow=allow_installs), watch_sys_path(path_added):
            module = import_pack(entry.module, entry.path)
            mappings, display_names = _read_mappings(module, entry, pending)
            display_names = {**pending_display, **display_names}
    except (Exception, SystemExit) as exc:  # a pack calling sys.exit() must not stop the server
        report.status = "failed"
        report.error = f"Cannot import {entry.path} module for custom nodes: {type(exc).__name__}: {exc}"
        hint = import_hint(exc, entry.path)
        if hint:
            report.error += f" ({hint})"
        report.traceback = traceback.format_exc()
        log.warning("%s\n%s", report.error, report.traceback)
    else:
        _register_nodes(report, registry, mappings, display_names)
        _rename_others(report, registry, mappings, display_names)
        added = {k: v for k, v in web_dirs.items() if web_dirs_before.get(k) != v}
        report.web_directory = web_directory_of(module, entry) or _added_web_directory(added, entry.name)
        report.status = "partial" if report.refused and report.nodes else "refused" if report.refused else "loaded"
        if report.status == "refused":
            report.error = f"no node of pack {entry.name!r} could be registered (see 'refused')"
    finally:
        handles.extra.pop("pending_mappings", None)
        handles.extra.pop("pending_display", None)
        report.seconds = time.perf_counter() - started
    report.routes_added = len(routes) - routes_before
    if path_added:
        report.warnings.append(
            f"pack {entry.name!r} added {path_added} to sys.path; its top-level modules can shadow other "
            f"packs' modules of the same name. Packs should use relative imports"
        )
    web_after = _files_under(legacy_web_root)
    report.legacy_web_files = sorted(f for f, stamp in web_after.items() if web_before.get(f) != stamp)
    if report.status != "failed":
        _adopt_legacy_web(report, legacy_web_root, served_root)
    if report.legacy_web_files:
        report.warnings.append(
            f"pack {entry.name!r} wrote {len(report.legacy_web_files)} file(s) into {legacy_web_root} at import "
            f"(old-style web extension); prefer WEB_DIRECTORY in the pack"
        )
    if report.pip_attempts and isinstance(handles.config, Config) and handles.config.allow_pack_installs:
        report.warnings.append(
            f"pack {entry.name!r} installed packages at import ({'; '.join(report.pip_attempts)}), "
            f"allowed by --allow-pack-installs"
        )
        log.warning("%s", report.warnings[-1])
    elif report.pip_attempts:
        report.warnings.append(
            f"pack {entry.name!r} tried to install packages at import ({'; '.join(report.pip_attempts)}); "
            f"Loom blocked it. Install its requirements.txt yourself: python -m app.packs install-requirements "
            f"{entry.path} (torch stays pinned), or start with --allow-pack-installs to let packs install"
        )
        log.warning("%s", report.warnings[-1])
    return report


def _read_mappings(module: ModuleType, entry: PackEntry, pending: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, str]]:
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    display = dict(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
    entrypoint = getattr(module, "comfy_entrypoint", None)
    if mappings is None and entrypoint is None and not pending:
        raise ImportError(
            f"Skip {entry.path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or "
            f"comfy_entrypoint (need one)"
        )
    if mappings is not None and not isinstance(mappings, dict):
        raise TypeError(f"NODE_CLASS_MAPPINGS of {entry.path} must be a dict, got {type(mappings).__name__}")
    result = {**pending, **(mappings or {})}
    if entrypoint is not None:
        for node_id, cls, display_name in run_entrypoint(entrypoint):
            result[node_id] = cls
            display.setdefault(node_id, display_name)
    return result, display


def _register_nodes(report: PackReport, registry: NodeRegistry, mappings: dict[str, Any], display: dict[str, str]) -> None:
    for node_id, cls in mappings.items():
        if node_id in registry:
            other = _source_of(registry, node_id)
            reason = (
                f"node id {node_id!r} from pack {report.module!r} collides with {node_id!r} already registered "
                f"by {other!r}; kept {other!r}'s (built-ins and earlier packs win). Rename the key in "
                f"{report.name}'s NODE_CLASS_MAPPINGS, or disable one pack (rename it to *.disabled)"
            )
            _refuse(report, node_id, reason)
            continue
        try:
            cls = check_node_class(node_id, cls, report.module, report.warnings)
            try:
                setattr(cls, "RELATIVE_PYTHON_MODULE", report.module)  # noqa: B010 (ComfyUI's attribute)
            except (AttributeError, TypeError):
                pass
            registry.register(node_id, cls, display_name=str(display.get(node_id) or node_id), source=report.module,
                              warnings=report.warnings)
        except InvalidNodeError as exc:
            _refuse(report, node_id, str(exc))
        except Exception as exc:  # the registry's own validation (RegistrationError) or a crashing class
            _refuse(report, node_id, f"node {node_id!r} of pack {report.module!r} was refused: {exc}")
        else:
            report.nodes.append(node_id)


def _rename_others(report: PackReport, registry: NodeRegistry, mappings: dict[str, Any],
                   display: dict[str, str]) -> None:
    # ComfyUI lets NODE_DISPLAY_NAME_MAPPINGS retitle nodes the pack does not own (built-ins included).
    for node_id, title in display.items():
        if node_id in mappings or node_id not in registry:
            continue
        registry.set_display_name(node_id, str(title))
        report.warnings.append(f"pack {report.name!r} renamed node {node_id!r} (from {_source_of(registry, node_id)!r}) "
                               f"to {title!r} in the menu")


def _refuse(report: PackReport, node_id: str, reason: str) -> None:
    report.refused.append({"node": node_id, "reason": reason})
    log.warning("custom nodes: %s", reason)


def _source_of(registry: NodeRegistry, node_id: str) -> str:
    return registry.source_of(node_id) if node_id in registry else "another source"


def web_directories(reports: Iterable[PackReport]) -> dict[str, Path]:
    """`{pack name: web dir}` to serve at `/extensions/<pack name>/` (spec 1.9)."""
    return {r.name: Path(r.web_directory) for r in reports if r.web_directory and r.status != "failed"}


def extension_urls(reports: Iterable[PackReport]) -> list[str]:
    """The `/extensions` entries contributed by packs: every `**/*.js` of each web directory."""
    urls: list[str] = []
    for name, folder in web_directories(reports).items():
        for js in sorted(folder.rglob("*.js")):
            rel = js.relative_to(folder).as_posix()
            urls.append(f"/extensions/{quote(name)}/{rel}")
    return urls


def format_import_times(reports: Iterable[PackReport]) -> str:
    """ComfyUI's start-up table: one line per pack, slowest first."""
    lines = ["Import times for custom nodes:"]
    for r in sorted(reports, key=lambda r: -r.seconds):
        if r.status == "disabled":
            continue
        flags = {"failed": " (IMPORT FAILED)", "partial": " (SOME NODES REFUSED)", "refused": " (NODES REFUSED)"}
        flag = flags.get(r.status, "")
        lines.append(f"{r.seconds:8.1f} seconds{flag}: {r.path}")
    return "\n".join(lines)




def load_pack_for_test(pack_dir: Path, base_dir: Path, registry: NodeRegistry) -> tuple[PackReport, Callable[[], None]]:
    """Load the one pack at `pack_dir` the way the server does (its own module name, the ComfyUI module
    view, a headless `server.PromptServer`) into `registry`, for a pack's own tests.

    Returns the pack's report and a cleanup function that uninstalls the ComfyUI view and forgets the
    imported pack modules (call it at teardown). Nothing else of the pack's folder is loaded.
    """
    from app.compat.prompt_server import PromptServer

    server = PromptServer(None, None, None)
    environment = CompatEnvironment(LoomHandles(registry=registry, base_dir=base_dir))
    reports = load_custom_nodes(registry, [pack_dir.parent], server, environment=environment,
                                disable_all=True, whitelist=[pack_dir.name], run_prestartup=False, model_path_folders=False,
                                installed_packs=False)
    report = next(r for r in reports if r.name == pack_dir.name)

    def cleanup() -> None:
        environment.uninstall()
        for name in [n for n in sys.modules if n == PACKAGE_ROOT or n.startswith(PACKAGE_ROOT + ".")]:
            del sys.modules[name]
        PromptServer.instance = None

    return report, cleanup
